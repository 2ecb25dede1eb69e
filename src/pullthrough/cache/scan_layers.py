"""What scans read images through: the cache itself. A manifest or layer not cached yet is
fetched like any pull (one upstream GET however many ask, the same single-flight as clients'
GETs) and kept, so a scan of a cold image costs the upstream what one pull would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pullthrough.cache.blobs import BlobCache, StoredBlob
from pullthrough.cache.fill.reading import read_stored
from pullthrough.cache.manifests import ManifestCache
from pullthrough.cache.routing import Route
from pullthrough.cache.rulebook import RuleBook
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.scanning.gate import Gate
from pullthrough.scanning.model import Finding, Inventory
from pullthrough.scanning.scans.job import LayerRef
from pullthrough.scanning.scans.service import ScanService
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.locks import Locks

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CacheScanning:
    """Scanning as one worker runs it over its cache: the scan pool and the gate."""

    service: ScanService
    gate: Gate


def open_scanning(
    rules: RuleBook,
    manifests: ManifestCache,
    blobs: BlobCache,
    driver: BlobDriver,
    metadata: MetadataStore,
    locks: Locks,
    spool_dir: Path,
) -> CacheScanning:
    """The scan pool and the gate over this cache, hooked into its manifest pulls; the pool is
    started (`service.start()`) and closed by the caller. The inventory reader and the
    vulnerability database are loaded at the first scan: a worker that never scans does not
    hold them."""
    source = CachedImageSource(rules, manifests, blobs, driver)
    loaded: dict[str, Any] = {}

    async def read_inventory(repository: str, layers: Sequence[LayerRef]) -> Inventory:
        inventories = loaded.get("inventories")
        if inventories is None:
            from pullthrough.metadata.layer_inventories import LayerInventoryStore
            from pullthrough.scanning.inventory import LayerInventories

            inventories = LayerInventories(
                source, LayerInventoryStore(metadata.engine), spool_dir=spool_dir
            )
            loaded["inventories"] = inventories
        from pullthrough.scanning.inventory import Layer

        image: Inventory = await inventories.image(
            repository, [Layer(layer.digest, layer.media_type) for layer in layers]
        )
        return image

    async def match(inventory: Inventory) -> list[Finding]:
        database = loaded.get("vulndb")
        if database is None:
            from pullthrough.scanning.vulndb import VulnerabilityDatabase

            database = loaded["vulndb"] = VulnerabilityDatabase(metadata.engine)
        findings: list[Finding] = await database.findings(inventory)
        return findings

    service = ScanService(metadata, source, read_inventory, match, locks)
    gate = Gate(service, metadata.revisions)
    manifests.scans = service
    manifests.gate = gate
    return CacheScanning(service, gate)


class CachedImageSource:
    """An `ImageSource` (scanning/scans/job.py) over the cache's manifests and blobs."""

    def __init__(
        self, rules: RuleBook, manifests: ManifestCache, blobs: BlobCache, driver: BlobDriver
    ) -> None:
        self._rules = rules
        self._manifests = manifests
        self._blobs = blobs
        self._driver = driver

    async def _route(self, repository: str) -> Route:
        return (await self._rules.router()).resolve(repository)

    async def manifest(self, repository: str, digest: str) -> tuple[str, bytes]:
        answer = await self._manifests.get(await self._route(repository), digest, None)
        return answer.manifest.media_type, answer.manifest.content

    async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
        answer = await self._blobs.open(await self._route(repository), Digest.parse(digest))
        source = answer.source
        if isinstance(source, StoredBlob):
            if source.path is not None:
                async for chunk in _read_file(source.path):
                    yield chunk
                return
            async for chunk in read_stored(self._driver, source.key, 0, source.size):
                yield chunk
            return
        async for chunk in source.read(0, None):
            yield chunk


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            yield chunk
