"""One scan of one platform image: its manifest and config, its layers' inventory, the
vulnerability database's findings about it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pullthrough.metadata.inventory import platform_name
from pullthrough.oci import mediatypes
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.model import Finding, Inventory, LayerSource
from pullthrough.scanning.results import finding_json

# An image config is a few KiB; more is not a config worth reading.
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


class ImageSource(LayerSource, Protocol):
    """Reads manifests and blobs of an image through the cache (cache/scan_layers.py): what is
    not cached yet is fetched and kept, like any pull."""

    async def manifest(self, repository: str, digest: str) -> tuple[str, bytes]:
        """The media type and bytes of manifest `digest` of `repository`."""


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer of an image as its manifest lists it."""

    digest: str
    media_type: str


# Reads the inventory of an image from its layers, in order (scanning/inventory/).
ReadInventory = Callable[[str, Sequence[LayerRef]], Awaitable[Inventory]]
# The vulnerability database's findings about an inventory (scanning/vulndb/).
MatchFindings = Callable[[Inventory], Awaitable[list[Finding]]]


class NotAnImage(Exception):
    """The digest is an index (its platform images are scanned instead) or an artifact."""


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    platform: str | None
    findings: list[dict[str, Any]]
    inventory: Inventory


async def image_layers(
    source: ImageSource, repository: str, digest: str
) -> tuple[str | None, list[LayerRef]]:
    """The platform (from the image config) and the layers of platform image `digest`."""
    media_type, content = await source.manifest(repository, digest)
    parsed = parse_manifest(content, media_type)
    if parsed.is_index:
        raise NotAnImage(f"{repository}@{digest} is an index: its platform images are scanned")
    if not parsed.blobs:
        raise NotAnImage(f"{repository}@{digest} has no layers to scan")
    if parsed.media_type in (mediatypes.DOCKER_MANIFEST_V1_SIGNED, mediatypes.DOCKER_MANIFEST_V1):
        # Schema 1 lists its layers top first, and has no config blob.
        layers = list(reversed(parsed.blobs))
        return None, [LayerRef(layer.digest, layer.media_type) for layer in layers]
    config, *layers = parsed.blobs
    platform = None
    if config.size <= _MAX_CONFIG_BYTES:
        raw = bytearray()
        async for chunk in source.layer(repository, config.digest):
            raw += chunk
        try:
            platform = platform_name(json.loads(bytes(raw)))
        except ValueError:
            platform = None
    return platform, [LayerRef(layer.digest, layer.media_type) for layer in layers]


async def scan_image(
    source: ImageSource,
    read_inventory: ReadInventory,
    match: MatchFindings,
    repository: str,
    digest: str,
) -> ScanOutcome:
    platform, layers = await image_layers(source, repository, digest)
    inventory = await read_inventory(repository, layers)
    findings = await match(inventory)
    return ScanOutcome(platform, [finding_json(f) for f in findings], inventory)
