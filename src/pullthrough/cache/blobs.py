"""Blobs through the cache: served from storage when present, else from one shared fill.

The service is the only place that knows a blob may be missing. It also keeps repositories
apart: a stored blob is served for a repository only when that repository's manifests reference
it or it was fetched through it; otherwise upstream is asked (HEAD) whether the repository has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from pullthrough.cache.fill import BlobFill
from pullthrough.cache.routing import Route
from pullthrough.cache.upstreams import Upstreams
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A complete, verified blob with a local file to send."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class FillingBlob:
    """A blob being downloaded now; read it as it grows."""

    fill: BlobFill


class BlobCache:
    def __init__(
        self,
        metadata: MetadataStore,
        driver: BlobDriver,
        upstreams: Upstreams,
        spool_dir: Path,
        fill_deadline: float,
    ) -> None:
        self._metadata = metadata
        self._driver = driver
        self._upstreams = upstreams
        self._spool_dir = spool_dir
        self._fill_deadline = fill_deadline
        self._fills: dict[str, BlobFill] = {}

    async def open(self, route: Route, digest: Digest) -> StoredBlob | FillingBlob:
        key = str(digest)
        size, linked = await self._metadata.blob_for_repository(route.repository, key)
        running = self._fills.get(key)
        if not linked and (
            size is not None or (running and running.repository != route.repository)
        ):
            await self._confirm_upstream(route, digest)
        if size is not None:
            path = self._driver.local_path(blob_key(digest.algorithm, digest.hex))
            if (
                path is not None
                and await self._driver.size(blob_key(digest.algorithm, digest.hex)) == size
            ):
                return StoredBlob(path, size)
            log.warning("blob %s is recorded but its file is missing; fetching it again", key)
            await self._metadata.forget_blobs([key])
        return FillingBlob(await self._join_fill(route, digest))

    async def head(self, route: Route, digest: Digest) -> int:
        """The blob's size, asking upstream only when it is not stored for this repository."""
        key = str(digest)
        size, linked = await self._metadata.blob_for_repository(route.repository, key)
        if size is not None and linked:
            return size
        running = self._fills.get(key)
        if running is not None and running.repository == route.repository:
            await running.wait_started()
            if running.size is not None:
                return running.size
        upstream_size = await self._confirm_upstream(route, digest)
        return upstream_size

    async def _confirm_upstream(self, route: Route, digest: Digest) -> int:
        client = self._upstreams.client(route.rule)
        size = await client.head_blob(route.upstream_repository, str(digest))
        repo_id = await self._metadata.repository_id(route.repository, route.rule.prefix)
        await self._metadata.link_blob(repo_id, str(digest))
        return size

    async def _join_fill(self, route: Route, digest: Digest) -> BlobFill:
        key = str(digest)
        fill = self._fills.get(key)
        if fill is None:
            repo_id = await self._metadata.repository_id(route.repository, route.rule.prefix)
            storage_key = blob_key(digest.algorithm, digest.hex)

            async def commit(spool: Path, size: int) -> None:
                await self._driver.put_file(storage_key, spool)
                await self._metadata.save_blob(key, size, repo_id)

            fill = self._fills.get(key)  # another request may have started it meanwhile
            if fill is None:
                fill = BlobFill(
                    digest=digest,
                    repository=route.repository,
                    upstream_repository=route.upstream_repository,
                    client=self._upstreams.client(route.rule),
                    spool_dir=self._spool_dir,
                    commit=commit,
                    final_path=self._driver.local_path(storage_key),
                    deadline=self._fill_deadline,
                )
                self._fills[key] = fill
                fill.start().add_done_callback(functools.partial(self._finished, fill))
        await fill.wait_started()
        return fill

    def _finished(self, fill: BlobFill, _task: object) -> None:
        key = str(fill.digest)
        if self._fills.get(key) is fill:
            del self._fills[key]

    @property
    def fills_in_progress(self) -> int:
        return len(self._fills)

    async def close(self) -> None:
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
