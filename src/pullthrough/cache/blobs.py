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
from pullthrough.cache.follow import FollowedFill
from pullthrough.cache.growing import GrowingBlob
from pullthrough.cache.interprocess import FileLock, fill_paths
from pullthrough.cache.manifests import ImportCheck, import_anything
from pullthrough.cache.routing import Route
from pullthrough.cache.singleflight import SingleFlight
from pullthrough.cache.upstreams import Upstreams
from pullthrough.errors import UpstreamUnavailable
from pullthrough.metadata.store import MetadataStore, StoredManifest
from pullthrough.oci.digest import Digest
from pullthrough.oci.manifest import parse_manifest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key

log = logging.getLogger(__name__)

# A fill that ends just as we look is retried once or twice, not forever.
_LEAD_OR_FOLLOW_ATTEMPTS = 3
# At shutdown, how long a verified fill may take to fsync and commit.
_COMMIT_ON_CLOSE_SECONDS = 10.0
# A refusal names this many of an image's uncached blobs, and counts the rest.
_UNCACHED_NAMED = 3


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A complete, verified blob with a local file to send."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class FillingBlob:
    """A blob being downloaded now, here or by another worker; read it as it grows."""

    fill: GrowingBlob


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
        self._flights: SingleFlight[GrowingBlob | StoredBlob] = SingleFlight()

    async def open(
        self, route: Route, digest: Digest, may_import: ImportCheck = import_anything
    ) -> StoredBlob | FillingBlob:
        key = str(digest)
        size, linked = await self._metadata.blob_for_repository(route.repository, key)
        if size is not None:
            stored = await self._stored(digest, size)
            if stored is not None:
                if not linked:
                    may_import(f"{route.repository}@{digest}")
                    await self._confirm_upstream(route, digest)
                return stored
            log.warning("blob %s is recorded but its file is missing; fetching it again", key)
            await self._metadata.forget_blobs([key])
        may_import(f"{route.repository}@{digest}")
        source: GrowingBlob | StoredBlob | None = self._fills.get(key)
        if source is None:
            source = await self._flights.run(key, lambda: self._lead_or_follow(route, digest))
        elif isinstance(source, GrowingBlob):
            await source.wait_started()
        if not linked and (isinstance(source, StoredBlob) or source.repository != route.repository):
            # Someone else's download: this repository must show upstream that it has the blob.
            await self._confirm_upstream(route, digest)
        return source if isinstance(source, StoredBlob) else FillingBlob(source)

    async def head(
        self, route: Route, digest: Digest, may_import: ImportCheck = import_anything
    ) -> int:
        """The blob's size, asking upstream only when it is not stored for this repository;
        `may_import` is asked first, as for a GET of it."""
        key = str(digest)
        size, linked = await self._metadata.blob_for_repository(route.repository, key)
        if size is not None and linked:
            return size
        may_import(f"{route.repository}@{digest}")
        running = self._fills.get(key)
        if running is not None and running.repository == route.repository:
            await running.wait_started()
            if running.size is not None:
                return running.size
        return await self._confirm_upstream(route, digest)

    async def check_image(
        self, route: Route, manifest: StoredManifest, may_import: ImportCheck
    ) -> None:
        """Refuse, through `may_import`, an image manifest whose config or layers are not all
        cached for this repository. A principal that may not import could not fetch them, and
        clients print the reason a manifest was refused but only the status of a refused blob."""
        if may_import is import_anything:
            return
        parsed = parse_manifest(manifest.content, manifest.media_type)
        uncached = []
        for blob in parsed.blobs:
            size, linked = await self._metadata.blob_for_repository(route.repository, blob.digest)
            if size is None or not linked:
                uncached.append(blob.digest)
        if uncached:
            shown = ", ".join(uncached[:_UNCACHED_NAMED])
            if len(uncached) > _UNCACHED_NAMED:
                shown += f" and {len(uncached) - _UNCACHED_NAMED} more"
            may_import(
                f"blobs of {route.repository}@{manifest.digest} ({len(uncached)} of its "
                f"{len(parsed.blobs)} config and layer blobs are not cached: {shown})"
            )

    async def _stored(self, digest: Digest, size: int) -> StoredBlob | None:
        storage_key = blob_key(digest.algorithm, digest.hex)
        path = self._driver.local_path(storage_key)
        if path is not None and await self._driver.size(storage_key) == size:
            return StoredBlob(path, size)
        return None

    async def _confirm_upstream(self, route: Route, digest: Digest) -> int:
        client = self._upstreams.client(route.rule)
        size = await client.head_blob(route.upstream_repository, str(digest))
        repo_id = await self._metadata.repository_id(route.repository, route.rule.prefix)
        await self._metadata.link_blob(repo_id, str(digest))
        return size

    async def _lead_or_follow(self, route: Route, digest: Digest) -> GrowingBlob | StoredBlob:
        """Fill the blob here, or follow the worker process that is filling it already."""
        lock_path, record_path = fill_paths(self._spool_dir, digest.algorithm, digest.hex)
        storage_key = blob_key(digest.algorithm, digest.hex)
        final_path = self._driver.local_path(storage_key)
        assert final_path is not None
        for _ in range(_LEAD_OR_FOLLOW_ATTEMPTS):
            lock = FileLock(lock_path)
            if await asyncio.to_thread(lock.try_acquire):
                return await self._lead(route, digest, lock, record_path, final_path)
            follower = FollowedFill(
                digest=digest,
                lock_path=lock_path,
                record_path=record_path,
                final_path=final_path,
                deadline=self._fill_deadline,
            )
            if await follower.attach():
                await follower.wait_started()
                return follower
        raise UpstreamUnavailable(f"could not start or follow a fill of {digest}; retry")

    async def _lead(
        self, route: Route, digest: Digest, lock: FileLock, record_path: Path, final_path: Path
    ) -> GrowingBlob | StoredBlob:
        key = str(digest)
        size, _ = await self._metadata.blob_for_repository(route.repository, key)
        stored = await self._stored(digest, size) if size is not None else None
        if stored is not None:  # another worker committed it while we looked
            lock.release()
            return stored
        storage_key = blob_key(digest.algorithm, digest.hex)

        async def commit(spool: Path, size: int) -> None:
            await self._driver.put_file(storage_key, spool)
            # The repository is created with its first content, not by a fill that fails.
            repo_id = await self._metadata.repository_id(route.repository, route.rule.prefix)
            await self._metadata.save_blob(key, size, repo_id)

        await asyncio.to_thread(record_path.unlink, missing_ok=True)  # an earlier failure's
        fill = BlobFill(
            digest=digest,
            repository=route.repository,
            upstream_repository=route.upstream_repository,
            client=self._upstreams.client(route.rule),
            spool_dir=self._spool_dir,
            commit=commit,
            final_path=final_path,
            deadline=self._fill_deadline,
            lock=lock,
            record_path=record_path,
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

    @property
    def fills(self) -> tuple[BlobFill, ...]:
        """The fills this worker leads now: what a drain at shutdown waits for."""
        return tuple(self._fills.values())

    async def close(self) -> None:
        """Stop downloads in progress; let verified ones finish committing (briefly), since
        their clients already have every byte and expect the next pull to be warm."""
        verified = [f.task for f in self._fills.values() if f.task is not None and f.verified]
        if verified:
            await asyncio.wait(verified, timeout=_COMMIT_ON_CLOSE_SECONDS)
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
