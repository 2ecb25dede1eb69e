"""What pullthrough needs to know about a manifest: what it references and what it is about."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pullthrough.errors import DigestInvalid, ManifestInvalid
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Descriptor, ...] = ()  # config and layers
    children: tuple[Descriptor, ...] = ()  # manifests an index lists
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestInvalid(f"manifest {where} is not an object")
    try:
        digest = str(Digest.parse(str(raw["digest"])))
        size = int(raw["size"])
        media_type = str(raw.get("mediaType", ""))
    except (KeyError, TypeError, ValueError, DigestInvalid) as exc:
        raise ManifestInvalid(f"manifest {where} is not a valid descriptor: {exc}") from None
    annotations = raw.get("annotations")
    platform = raw.get("platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=raw.get("artifactType"),
        annotations=annotations if isinstance(annotations, dict) else None,
        platform=platform if isinstance(platform, dict) else None,
    )


def parse_manifest(content: bytes, declared_type: str | None) -> ParsedManifest:
    """Parse a manifest's JSON; the media type is the declared one, else the document's own."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    media_type = (declared_type or "").split(";", 1)[0].strip() or str(doc.get("mediaType", ""))
    if not media_type:
        media_type = mediatypes.OCI_INDEX if "manifests" in doc else mediatypes.OCI_MANIFEST
    annotations = doc.get("annotations")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") else None
    artifact_type = doc.get("artifactType")
    if media_type in mediatypes.INDEX_TYPES:
        children = tuple(
            _descriptor(item, f"manifests[{i}]")
            for i, item in enumerate(doc.get("manifests") or [])
        )
        return ParsedManifest(
            media_type,
            children=children,
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations if isinstance(annotations, dict) else {},
        )
    blobs: list[Descriptor] = []
    if media_type in (mediatypes.DOCKER_MANIFEST_V1_SIGNED, mediatypes.DOCKER_MANIFEST_V1):
        for i, layer in enumerate(doc.get("fsLayers") or []):
            blob_sum = layer.get("blobSum") if isinstance(layer, dict) else None
            blobs.append(_descriptor({"digest": blob_sum, "size": -1}, f"fsLayers[{i}]"))
    else:
        if doc.get("config"):
            blobs.append(_descriptor(doc["config"], "config"))
        blobs.extend(
            _descriptor(item, f"layers[{i}]") for i, item in enumerate(doc.get("layers") or [])
        )
        if artifact_type is None and doc.get("config"):
            config_type = blobs[0].media_type
            if config_type not in (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json",
            ):
                artifact_type = config_type
    return ParsedManifest(
        media_type,
        blobs=tuple(blobs),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations if isinstance(annotations, dict) else {},
    )
