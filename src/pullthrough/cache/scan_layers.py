"""What scans read images through: the cache itself. A manifest or layer not cached yet is
fetched like any pull (one upstream GET however many ask, the same single-flight as clients'
GETs) and kept, so a scan of a cold image costs the upstream what one pull would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from pullthrough.cache.blobs import BlobCache, StoredBlob
from pullthrough.cache.fill.reading import read_stored
from pullthrough.cache.manifests import ManifestCache
from pullthrough.cache.routing import Route
from pullthrough.cache.rulebook import RuleBook
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver

_CHUNK = 1024 * 1024


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
