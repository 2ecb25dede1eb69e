"""The scan service and the gate over a real metadata database, with small fakes for what they
read an image through (its manifests and layers), its inventory and the vulnerability database."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from pullthrough.errors import Denied, TooManyRequests
from pullthrough.metadata.revisions import VULNDB, Revisions, bump
from pullthrough.metadata.scanning import GatePolicy, RepositoryFilter, ScanningConfiguration
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.oci import mediatypes
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.gate import Gate
from pullthrough.scanning.model import Distro, Finding, Inventory, Package
from pullthrough.scanning.scans.job import LayerRef
from pullthrough.scanning.scans.service import ScanLimits, ScanService
from pullthrough.storage.locks import FileLocks

REPO = "up/gated/app"


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


class FakeImages:
    """Images as manifests and blobs in memory; a layer's bytes name the package it holds."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}

    def image(self, architecture: str, package_version: str) -> str:
        config = json.dumps({"os": "linux", "architecture": architecture}).encode()
        layer = f"libssl3 {package_version}".encode()
        self.blobs[_digest(config)] = config
        self.blobs[_digest(layer)] = layer
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        self.manifests[_digest(manifest)] = (mediatypes.OCI_MANIFEST, manifest)
        return _digest(manifest)

    def index(self, children: dict[str, str]) -> tuple[str, bytes]:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": mediatypes.OCI_MANIFEST,
                        "digest": digest,
                        "size": len(self.manifests[digest][1]),
                        "platform": {"os": "linux", "architecture": architecture},
                    }
                    for architecture, digest in children.items()
                ],
            }
        ).encode()
        self.manifests[_digest(manifest)] = (mediatypes.OCI_INDEX, manifest)
        return _digest(manifest), manifest

    async def manifest(self, repository: str, digest: str) -> tuple[str, bytes]:
        return self.manifests[digest]

    async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
        yield self.blobs[digest]


class FakeDatabase:
    """Reads the package from the layer; finds one advisory for libssl3 before `fixed`."""

    def __init__(self, images: FakeImages) -> None:
        self._images = images
        self.fixed: str | None = "3.0.12"
        self.severity = "HIGH"
        self.hold = asyncio.Event()
        self.hold.set()

    async def read_inventory(self, repository: str, layers: Sequence[LayerRef]) -> Inventory:
        name, version = self._images.blobs[layers[0].digest].decode().split()
        package = Package("Debian", name, version, f"pkg:deb/debian/{name}@{version}", "openssl")
        return Inventory(Distro("debian", "12"), (package,))

    async def match(self, inventory: Inventory) -> list[Finding]:
        await self.hold.wait()
        package = inventory.packages[0]
        if self.fixed is None or package.version >= self.fixed:
            return []
        return [
            Finding(
                "DSA-1-1",
                ("CVE-2099-1",),
                package,
                self.severity,
                7.5,
                None,
                self.fixed,
                "openssl",
            )
        ]


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    try:
        yield store
    finally:
        await store.close()


async def _setup(
    metadata: MetadataStore, tmp_path: Path, **policy: object
) -> tuple[FakeImages, FakeDatabase, ScanService, Gate]:
    images = FakeImages()
    database = FakeDatabase(images)
    service = ScanService(
        metadata,
        images,
        database.read_inventory,
        database.match,
        FileLocks(tmp_path),
        ScanLimits(poll_seconds=0.05),
    )
    gate_wait = float(policy.pop("gate_wait_seconds", 30.0))  # type: ignore[arg-type]
    gate = GatePolicy((RepositoryFilter("up/gated/*"),), **policy)  # type: ignore[arg-type]
    await service.configuration.put(
        ScanningConfiguration(gates=(gate,), gate_wait_seconds=gate_wait)
    )
    service.start()
    # Counters read afresh at every check: a change reaches the gate at once.
    return images, database, service, Gate(service, Revisions(metadata.engine, interval=0.0))


async def _check(gate: Gate, images: FakeImages, digest: str, repository: str = REPO) -> None:
    media_type, content = images.manifests[digest]
    await gate.check(repository, digest, media_type, content)


async def test_a_vulnerable_image_is_refused_with_its_advisory_and_fix(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    images, _database, service, gate = await _setup(metadata, tmp_path, block_severity="HIGH")
    try:
        vulnerable = images.image("amd64", "3.0.11")
        with pytest.raises(Denied) as refused:
            await _check(gate, images, vulnerable)
        assert "linux/amd64: DSA-1-1 (HIGH) in libssl3 3.0.11, fixed in 3.0.12" in str(
            refused.value
        )
        await _check(gate, images, images.image("amd64", "3.0.13"))  # no finding: served
        await _check(gate, images, vulnerable, repository="up/open/app")  # not gated
    finally:
        await service.close()


async def test_an_index_is_refused_naming_the_platform_that_is_vulnerable(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    images, _database, service, gate = await _setup(metadata, tmp_path, block_severity="HIGH")
    try:
        children = {
            "amd64": images.image("amd64", "3.0.13"),
            "arm64": images.image("arm64", "3.0.11"),
        }
        index, _ = images.index(children)
        with pytest.raises(Denied) as refused:
            await _check(gate, images, index)
        assert "linux/arm64: DSA-1-1" in str(refused.value)
        assert "linux/amd64" not in str(refused.value)
        await service.store.override(children["arm64"], "accepted")
        await _check(gate, images, index)
    finally:
        await service.close()


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ({"block_severity": "HIGH", "allowed": ("CVE-2099-1",)}, True),  # an alias allowed
        ({"block_severity": "CRITICAL"}, True),  # HIGH is below the bar
        ({"block_severity": "MEDIUM"}, False),
        ({"block_severity": "HIGH", "only_fixable": True}, False),  # it has a fix
    ],
)
async def test_the_policy_decides_which_findings_refuse(
    metadata: MetadataStore, tmp_path: Path, policy: dict[str, object], served: bool
) -> None:
    images, _database, service, gate = await _setup(metadata, tmp_path, **policy)
    try:
        digest = images.image("amd64", "3.0.11")
        if served:
            await _check(gate, images, digest)
        else:
            with pytest.raises(Denied):
                await _check(gate, images, digest)
    finally:
        await service.close()


async def test_a_scan_not_done_within_the_bound_is_answered_with_retry_after(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    images, database, service, gate = await _setup(
        metadata, tmp_path, block_severity="HIGH", gate_wait_seconds=0.2
    )
    try:
        database.hold.clear()  # the scan cannot finish
        digest = images.image("amd64", "3.0.13")
        with pytest.raises(TooManyRequests) as waiting:
            await _check(gate, images, digest)
        assert waiting.value.status == 429
        assert waiting.value.headers["Retry-After"] == "10"
        assert "being scanned" in waiting.value.message
        database.hold.set()
        rows = await service.wait((digest,), 30.0)
        assert rows[digest].state == "done"
        await _check(gate, images, digest)
    finally:
        await service.close()


async def test_a_database_update_rescans_cached_images_and_forgets_those_gone(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    images, database, service, _gate = await _setup(metadata, tmp_path, block_severity="HIGH")
    try:
        database.fixed = None  # no advisory yet
        digest = images.image("amd64", "3.0.11")
        media_type, content = images.manifests[digest]
        repository_id = await metadata.repositories.id(REPO, "up")
        await metadata.manifests.save(
            repository_id, digest, content, parse_manifest(content, media_type)
        )
        await service.queue(REPO, digest)
        assert (await service.wait((digest,), 30.0))[digest].findings == []
        database.fixed = "3.0.12"
        async with metadata.engine.begin() as conn:
            await bump(conn, VULNDB)
        for _ in range(300):
            row = await service.store.get(digest)
            if row is not None and row.findings:
                break
            await asyncio.sleep(0.05)
        assert row is not None
        assert [f["advisory"] for f in row.findings or []] == ["DSA-1-1"]

        # An image no longer cached is not fetched again for a rescan: its scan is dropped.
        gone = images.image("amd64", "3.0.10")
        await service.queue(REPO, gone)
        assert (await service.wait((gone,), 30.0))[gone].state == "done"
        async with metadata.engine.begin() as conn:
            await bump(conn, VULNDB)
        for _ in range(300):
            if await service.store.get(gone) is None:
                break
            await asyncio.sleep(0.05)
        assert await service.store.get(gone) is None
        assert await service.store.get(digest) is not None
    finally:
        await service.close()
