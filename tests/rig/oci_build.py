"""Build real image content in Python: tar layers, image configs, manifests and indexes.

Everything is deterministic: file contents come from a seeded `random.Random`, tar entries
have fixed mtimes and owners, gzip has no timestamp, and JSON is encoded one fixed way. The same
seed gives the same digests on every run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tests.rig.pusher import Blob, sha256_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_UNCOMPRESSED = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

Flavor = Literal["docker", "oci"]

# 2020-01-01T00:00:00Z: a fixed timestamp for tar entries and configs.
FIXED_EPOCH = 1577836800
_CREATED = "2020-01-01T00:00:00Z"
_LARGE_PIECE = 8 * 1024 * 1024
_TAR_BLOCK = 512


@dataclass(frozen=True)
class ImageContent:
    """The blobs of one single-platform image: its config and its layers, in order."""

    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


def encode_json(document: dict[str, Any]) -> bytes:
    """The one JSON encoding the rig uses: indented like docker's, so a cache that re-encodes
    a manifest (and so changes its digest) is caught."""
    return json.dumps(document, indent=3).encode()


def tar_archive(files: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar with regular files owned by root, all at the fixed mtime."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files:
            archive.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def random_files(rng: random.Random, prefix: str, count: int, size: int) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/file-{i:03d}.bin", rng.randbytes(size)) for i in range(count)]


def build_image(
    rng: random.Random,
    *,
    flavor: Flavor,
    layer_count: int,
    layer_file_size: int = 4096,
    architecture: str = "amd64",
    os_name: str = "linux",
    label: str = "image",
) -> ImageContent:
    """A single-platform image with `layer_count` gzip'd tar layers of random files."""
    layer_type = DOCKER_LAYER if flavor == "docker" else OCI_LAYER
    layers = []
    diff_ids = []
    for index in range(layer_count):
        files = random_files(rng, f"{label}/layer-{index:02d}", 2, layer_file_size)
        tar = tar_archive(files)
        diff_ids.append(sha256_digest(tar))
        layers.append(Blob.of(gzip_bytes(tar), layer_type))
    config = image_config(diff_ids, flavor=flavor, architecture=architecture, os_name=os_name)
    return ImageContent(config, tuple(layers))


def image_config(
    diff_ids: list[str],
    *,
    flavor: Flavor,
    architecture: str = "amd64",
    os_name: str = "linux",
) -> Blob:
    """An image config whose `rootfs.diff_ids` are the sha256 of each uncompressed layer."""
    document = {
        "architecture": architecture,
        "os": os_name,
        "created": _CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": _CREATED, "created_by": "pullthrough test rig"} for _ in diff_ids],
    }
    media_type = DOCKER_CONFIG if flavor == "docker" else OCI_CONFIG
    return Blob.of(encode_json(document), media_type)


def image_manifest(
    config: Blob,
    layers: list[Blob] | tuple[Blob, ...],
    *,
    flavor: Flavor,
    artifact_type: str | None = None,
    subject: dict[str, object] | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """A Docker schema2 or OCI image manifest and its media type."""
    media_type = DOCKER_MANIFEST if flavor == "docker" else OCI_MANIFEST
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    document["config"] = config.descriptor()
    document["layers"] = [layer.descriptor() for layer in layers]
    if subject is not None:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return encode_json(document), media_type


def index_manifest(manifests: list[dict[str, object]], *, flavor: Flavor) -> tuple[bytes, str]:
    """An OCI image index or Docker manifest list over the given descriptors."""
    media_type = DOCKER_MANIFEST_LIST if flavor == "docker" else OCI_INDEX
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    return encode_json(document), media_type


def large_tar_layer(path: Path, seed: int, size: int) -> Blob:
    """An uncompressed tar holding one `size`-byte file of seeded random bytes, written to
    `path` and hashed as it is written; reused when `path` already holds it.

    The tar is assembled by hand (header, data, padding, end-of-archive blocks) because tarfile
    wants a readable source, and the content is generated piece by piece instead.
    """
    digest_path = path.with_name(path.name + ".sha256")
    if path.exists() and digest_path.exists():
        return Blob(
            digest_path.read_text().strip(), path.stat().st_size, OCI_LAYER_UNCOMPRESSED, path
        )
    header = _tar_info("large/random.bin", size).tobuf(format=tarfile.PAX_FORMAT)
    rng = random.Random(seed)
    hasher = hashlib.sha256()
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:

        def write(data: bytes) -> None:
            hasher.update(data)
            out.write(data)

        write(header)
        remaining = size
        while remaining > 0:
            piece = rng.randbytes(min(_LARGE_PIECE, remaining))
            write(piece)
            remaining -= len(piece)
        write(b"\0" * (-size % _TAR_BLOCK) + b"\0" * (2 * _TAR_BLOCK))
        total = out.tell()
    partial.rename(path)
    digest = "sha256:" + hasher.hexdigest()
    digest_path.write_text(digest + "\n")
    return Blob(digest, total, OCI_LAYER_UNCOMPRESSED, path)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_EPOCH
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
