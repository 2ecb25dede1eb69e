"""Manifest media types pullthrough understands, and the `Accept` it sends upstream."""

from __future__ import annotations

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_TYPES = frozenset({DOCKER_MANIFEST_V2, OCI_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES | {DOCKER_MANIFEST_V1_SIGNED, DOCKER_MANIFEST_V1}

# Sent upstream when filling a tag, so the tag maps to the widest manifest (an index when there
# is one); a client that accepts less is answered separately.
UPSTREAM_ACCEPT = ", ".join(
    [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_V1_SIGNED]
)


def parse_accept(header: str | None) -> frozenset[str] | None:
    """The media types an `Accept` header names, or None when it accepts anything."""
    if not header:
        return None
    types = set()
    for part in header.split(","):
        media_type = part.split(";", 1)[0].strip().lower()
        if media_type in ("*/*", "application/*", "application/json"):
            return None
        if media_type:
            types.add(media_type)
    return frozenset(types) if types else None


def accepts(accepted: frozenset[str] | None, media_type: str) -> bool:
    return accepted is None or media_type in accepted
