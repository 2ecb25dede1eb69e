"""Blobs through the cache: served from storage when present, else from one shared fill.

The service is the only place that knows a blob may be missing. It also keeps repositories
apart: a stored blob is served for a repository only when that repository's manifests reference
it or it was fetched through it; otherwise upstream is asked (HEAD) whether the repository has it.

A GET is answered in two steps, so that the HTTP layer can label the request before a range is
refused: `open` finds the blob (a hit) or the fill that brings it (a miss), and `send` says what
to send of it and counts it in the statistics: a stored local file (`sendfile`), a stream of the
stored object read through the driver (storage without local files), a stream of the growing
fill, or — when asked and the driver can — a redirect to a presigned URL of the stored object.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import aiohttp

from pullthrough.access.import_check import ImportCheck, import_anything
from pullthrough.access.peer_tokens import PeerTokens
from pullthrough.cache.byte_range import ByteRange
from pullthrough.cache.fill.follow import FollowFill
from pullthrough.cache.fill.lead import LeadFill
from pullthrough.cache.fill.peer import PeerFill, PeerHasNoFill
from pullthrough.cache.fill.reading import Fill, SpoolSpan, read_stored
from pullthrough.cache.fill.state import FillState, record_path
from pullthrough.cache.routing import Route
from pullthrough.cache.singleflight import SingleFlight
from pullthrough.cache.stats import StatsRecorder
from pullthrough.cache.upstreams import Upstreams
from pullthrough.errors import RegistryError, StorageUnavailable, UpstreamUnavailable
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import ExclusiveLock, FileLocks, Locks
from pullthrough.telemetry import metrics
from pullthrough.telemetry.tracing import record_served

log = logging.getLogger(__name__)

F = TypeVar("F", LeadFill, PeerFill)

# A fill that ends just as we look is retried once or twice, not forever.
_LEAD_OR_FOLLOW_ATTEMPTS = 4
# How long a request waits for the fill lease of a replica that does not answer to lapse (its
# ttl is 10 s), and how often it looks.
_LEASE_TAKEOVER_SECONDS = 15.0
_LEASE_POLL_SECONDS = 0.2
# At shutdown, how long a verified fill may take to fsync and commit.
_COMMIT_ON_CLOSE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Peers:
    """How this replica reaches the others: a fill another replica leads is streamed from it."""

    own_url: str  # this replica's advertise_url: a lock held under it is held on this host
    session: aiohttp.ClientSession
    tokens: PeerTokens


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A complete, verified blob in storage; `path` is its local file, None when the driver
    keeps none (object storage): then its bytes are read through the driver."""

    key: str  # the storage key
    size: int
    path: Path | None


@dataclass(frozen=True, slots=True)
class BlobAnswer:
    """What a GET of a blob found: the stored blob, or the fill bringing it from upstream."""

    route: Route
    source: StoredBlob | Fill

    @property
    def cache(self) -> Literal["hit", "miss"]:
        return "hit" if isinstance(self.source, StoredBlob) else "miss"


@dataclass(frozen=True, slots=True)
class BlobFile:
    """Send this stored file; its bytes are the blob's (the range was found satisfiable)."""

    path: Path


@dataclass(frozen=True, slots=True)
class BlobRedirect:
    """Send the client to this URL of the stored object (presigned, it expires)."""

    url: str


class BlobStream:
    """Send bytes [start, end) of the blob as they arrive; `end` None means to the end.

    The bytes come from a fill as it grows (a miss), as spans of its spool file to send with
    `sendfile`, or from the stored object through the driver (a hit without a local file), as
    bytes. A range of the blob is sent as partial content with `content_range`; `counted` is
    called with the bytes sent when the stream ends, or when it fails under them.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes | SpoolSpan],
        start: int,
        end: int | None,
        content_range: str | None,
        counted: Callable[[int], None],
    ) -> None:
        self.start = start
        self.end = end
        self.content_range = content_range
        self._chunks = chunks
        self._counted = counted

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start

    async def pieces(self) -> AsyncIterator[bytes | SpoolSpan]:
        """The bytes, or spans of a spool file, in order; a RegistryError once the source fails
        (for a fill, short of the last byte, so the client never has the whole of a wrong blob).
        A piece is counted as sent once the next is asked for."""
        sent = 0
        try:
            async for piece in self._chunks:
                yield piece
                sent += len(piece) if isinstance(piece, bytes) else piece.count
        except RegistryError:
            self._counted(sent)
            raise
        self._counted(sent)


async def _reading_fill(
    pieces: AsyncIterator[bytes | SpoolSpan],
) -> AsyncIterator[bytes | SpoolSpan]:
    """A fill's pieces as a reader gets them, counted among the fill's readers meanwhile."""
    counted = metrics.current()
    if counted is not None:
        counted.fill_readers.inc()
    try:
        async for piece in pieces:
            yield piece
    finally:
        if counted is not None:
            counted.fill_readers.dec()


async def _from_storage(chunks: AsyncIterator[bytes], key: str) -> AsyncIterator[bytes]:
    """A stored object's bytes, a failure of storage as a RegistryError."""
    try:
        async for chunk in chunks:
            yield chunk
    except RegistryError:
        raise
    except Exception as exc:
        log.warning("reading %s from storage failed: %s", key, exc)
        raise StorageUnavailable(f"reading {key} from storage failed") from exc


def _not_counted(sent: int) -> None:
    return None


def _forget_fill(running: dict[str, F], fill: F, _task: object) -> None:
    """Drop an ended fill from `running`, unless a newer fill of the blob took its place."""
    key = str(fill.digest)
    if running.get(key) is fill:
        del running[key]


async def _until_lease_moves(lock: ExclusiveLock, holder: str) -> None:
    """Return once `lock` is free or held by another than `holder`, or after a bound (the
    caller starts over either way)."""
    deadline = time.monotonic() + _LEASE_TAKEOVER_SECONDS
    while time.monotonic() < deadline:
        if await lock.is_free() or await lock.holder_url() != holder:
            return
        await asyncio.sleep(_LEASE_POLL_SECONDS)


class BlobCache:
    def __init__(
        self,
        metadata: MetadataStore,
        driver: BlobDriver,
        upstreams: Upstreams,
        spool_dir: Path,
        fill_deadline: float,
        locks: Locks,
        stats: StatsRecorder,
        peers: Peers | None = None,
    ) -> None:
        self._metadata = metadata
        self._driver = driver
        self._upstreams = upstreams
        self._spool_dir = spool_dir
        self._fill_deadline = fill_deadline
        self._locks = locks
        self._stats = stats
        self._peers = peers
        # The lock of this host that one worker holds while it streams a peer's fill, so the
        # other workers of this replica follow it rather than open their own stream.
        self._host_locks = FileLocks(spool_dir)
        self._fills: dict[str, LeadFill] = {}
        self._peer_fills: dict[str, PeerFill] = {}
        # Fills of other workers this worker follows: later requests join the same follower.
        self._follows: dict[str, FollowFill] = {}
        self._flights: SingleFlight[Fill | StoredBlob] = SingleFlight()
        self._warned_no_redirect = False

    async def open(
        self, route: Route, digest: Digest, may_import: ImportCheck = import_anything
    ) -> BlobAnswer:
        key = str(digest)
        size, linked = await self._metadata.blobs.for_repository(route.repository, key)
        if size is not None:
            stored = await self._stored(digest, size)
            if stored is not None:
                if not linked:
                    may_import(f"{route.repository}@{digest}")
                    await self._confirm_upstream(route, digest)
                return BlobAnswer(route, stored)
            log.warning("blob %s is recorded but its file is missing; fetching it again", key)
            await self._metadata.blobs.forget([key])
        may_import(f"{route.repository}@{digest}")
        source: Fill | StoredBlob | None = (
            self._fills.get(key) or self._peer_fills.get(key) or self._following(key)
        )
        if source is None:
            source = await self._flights.run(key, lambda: self._lead_or_follow(route, digest))
        elif isinstance(source, Fill):
            await source.wait_started()
        if not linked and (isinstance(source, StoredBlob) or source.repository != route.repository):
            # Someone else's download: this repository must show upstream that it has the blob.
            await self._confirm_upstream(route, digest)
        return BlobAnswer(route, source)

    async def send(
        self, answer: BlobAnswer, wanted: ByteRange | None, redirect_ttl: float | None = None
    ) -> BlobFile | BlobStream | BlobRedirect:
        """What to send of the blob `open` found: all of it, or the range `wanted` (a 416 when
        it lies outside the blob). A hit is counted now, a miss when its stream ends.

        With `redirect_ttl`, a hit is a redirect to a URL of the stored object valid that many
        seconds, when the driver hands out such URLs (the client sends its range there)."""
        prefix = answer.route.rule.prefix
        source = answer.source
        if isinstance(source, StoredBlob):
            start, end = 0, source.size
            if wanted is not None:
                start, end = wanted.resolve(source.size)
            url = await self._presigned(source, redirect_ttl)
            self._stats.hit(prefix, end - start)
            record_served(prefix, "blob", "hit", end - start)
            if url is not None:
                return BlobRedirect(url)
            if source.path is not None:
                return BlobFile(source.path)
            content_range = None if wanted is None else f"bytes {start}-{end - 1}/{source.size}"
            chunks = _from_storage(read_stored(self._driver, source.key, start, end), source.key)
            return BlobStream(chunks, start, end, content_range, _not_counted)
        if source.size is None and wanted is not None:
            await source.wait_done()  # a range of an unknown length needs the whole blob first
        first: int = 0
        last: int | None = source.size
        content_range = None
        if wanted is not None and source.size is not None:
            first, last = wanted.resolve(source.size)
            content_range = f"bytes {first}-{last - 1}/{source.size}"
        return BlobStream(
            _reading_fill(source.spans(first, last)),
            first,
            last,
            content_range,
            functools.partial(self._missed, prefix),
        )

    def _missed(self, prefix: str, sent: int) -> None:
        """A miss's stream ended, `sent` bytes sent."""
        self._stats.miss(prefix, sent)
        record_served(prefix, "blob", "miss", sent)

    async def _presigned(self, stored: StoredBlob, redirect_ttl: float | None) -> str | None:
        if redirect_ttl is None:
            return None
        url = await self._driver.presigned_url(stored.key, redirect_ttl)
        if url is None and not self._warned_no_redirect:
            self._warned_no_redirect = True
            log.warning(
                "storage.redirect_blobs is set, but this storage hands out no URLs "
                "(the filesystem): blobs are sent by the server"
            )
        return url

    async def head(
        self, route: Route, digest: Digest, may_import: ImportCheck = import_anything
    ) -> int:
        """The blob's size, asking upstream only when it is not stored for this repository;
        `may_import` is asked first, as for a GET of it."""
        key = str(digest)
        size, linked = await self._metadata.blobs.for_repository(route.repository, key)
        if size is not None and linked:
            return size
        may_import(f"{route.repository}@{digest}")
        running = self._fills.get(key)
        if running is not None and running.repository == route.repository:
            await running.wait_started()
            if running.size is not None:
                return running.size
        return await self._confirm_upstream(route, digest)

    async def _stored_for(self, route: Route, digest: Digest) -> StoredBlob | None:
        """The blob, if it was committed (by another worker or replica) since we last looked."""
        size, _ = await self._metadata.blobs.for_repository(route.repository, str(digest))
        return await self._stored(digest, size) if size is not None else None

    def _following(self, key: str) -> FollowFill | None:
        """The follower of another worker's fill of `key` this worker has, while that fill
        runs (its record says so: a finished follower may not know it has ended)."""
        for digest, ended in tuple(self._follows.items()):
            if not ended.following:
                del self._follows[digest]
        follower = self._follows.get(key)
        if follower is not None and not follower.still_running():
            del self._follows[key]
            return None
        return follower

    async def _follow(
        self, digest: Digest, lock: ExclusiveLock, record: Path, final_path: Path | None
    ) -> FollowFill | None:
        """Follow the fill another worker of this host runs under `lock`; None when there is
        none to follow (it ended, or its worker is gone)."""
        follower = FollowFill(
            digest=digest,
            lock=lock,
            record_path=record,
            final_path=final_path,
            driver=self._driver,
            deadline=self._fill_deadline,
        )
        if not await follower.attach():
            return None
        await follower.wait_started()
        if follower.following:
            self._follows[str(digest)] = follower
        return follower

    async def _stored(self, digest: Digest, size: int) -> StoredBlob | None:
        storage_key = blob_key(digest.algorithm, digest.hex)
        if await self._driver.size(storage_key) == size:
            return StoredBlob(storage_key, size, self._driver.local_path(storage_key))
        return None

    async def _confirm_upstream(self, route: Route, digest: Digest) -> int:
        client = self._upstreams.client(route.rule)
        size = await client.head_blob(route.upstream_repository, str(digest))
        repo_id = await self._metadata.repositories.id(route.repository, route.rule.prefix)
        await self._metadata.blobs.link(repo_id, str(digest))
        return size

    async def _lead_or_follow(self, route: Route, digest: Digest) -> Fill | StoredBlob:
        """Fill the blob here; or follow the worker of this host that fills it already; or,
        when another replica holds the fill's lock, stream that replica's fill."""
        record = record_path(self._spool_dir, digest.algorithm, digest.hex)
        storage_key = blob_key(digest.algorithm, digest.hex)
        final_path = self._driver.local_path(storage_key)  # None: storage keeps no local files
        for _ in range(_LEAD_OR_FOLLOW_ATTEMPTS):
            lock = self._locks.blob_fill(digest.algorithm, digest.hex)
            if await lock.try_acquire():
                return await self._lead(route, digest, lock, record, final_path)
            holder = await lock.holder_url()
            if self._peers is not None and holder is not None and holder != self._peers.own_url:
                try:
                    peer = await self._from_peer(route, digest, holder, record, final_path)
                except UpstreamUnavailable as exc:
                    # The holder does not answer: killed, most likely. Its lease lapses within
                    # the lease's ttl; then this replica (or another) takes the fill over.
                    log.warning("replica %s holds the fill of %s: %s", holder, digest, exc.message)
                    await _until_lease_moves(lock, holder)
                    continue
                if peer is not None:
                    return peer
                continue  # the peer had no fill: stored by now, or free for us to lead
            follower = await self._follow(digest, lock, record, final_path)
            if follower is not None:
                return follower
        raise UpstreamUnavailable(f"could not start or follow a fill of {digest}; retry")

    async def _from_peer(
        self, route: Route, digest: Digest, peer_url: str, record: Path, final_path: Path | None
    ) -> Fill | StoredBlob | None:
        """Stream the fill the replica at `peer_url` leads: one stream per replica, which this
        host's other workers follow. None when the peer has no such fill (any more)."""
        assert self._peers is not None
        key = str(digest)
        stored = await self._stored_for(route, digest)
        if stored is not None:
            return stored
        host_lock = self._host_locks.blob_fill(digest.algorithm, digest.hex)
        if not await host_lock.try_acquire():
            return await self._follow(digest, host_lock, record, final_path)
        await asyncio.to_thread(record.unlink, missing_ok=True)  # an earlier failure's
        fill = PeerFill(
            digest=digest,
            repository=route.repository,
            peer_url=peer_url,
            session=self._peers.session,
            tokens=self._peers.tokens,
            driver=self._driver,
            spool_dir=self._spool_dir,
            deadline=self._fill_deadline,
            lock=host_lock,
            record_path=record,
        )
        self._peer_fills[key] = fill
        fill.start().add_done_callback(functools.partial(_forget_fill, self._peer_fills, fill))
        try:
            await fill.wait_started()
        except PeerHasNoFill:
            return None
        return fill

    async def _lead(
        self,
        route: Route,
        digest: Digest,
        lock: ExclusiveLock,
        record: Path,
        final_path: Path | None,
    ) -> Fill | StoredBlob:
        key = str(digest)
        stored = await self._stored_for(route, digest)
        if stored is not None:  # another worker committed it while we looked
            await lock.release()
            return stored
        await asyncio.to_thread(record.unlink, missing_ok=True)  # an earlier failure's
        fill = LeadFill(
            digest=digest,
            repository=route.repository,
            rule_prefix=route.rule.prefix,
            upstream_repository=route.upstream_repository,
            client=self._upstreams.client(route.rule),
            spool_dir=self._spool_dir,
            driver=self._driver,
            metadata=self._metadata,
            final_path=final_path,
            deadline=self._fill_deadline,
            lock=lock,
            record_path=record,
        )
        self._fills[key] = fill
        fill.start().add_done_callback(functools.partial(_forget_fill, self._fills, fill))
        await fill.wait_started()
        return fill

    @property
    def fills(self) -> tuple[LeadFill, ...]:
        """The fills this worker leads now: what a drain at shutdown waits for."""
        return tuple(self._fills.values())

    async def close(self) -> None:
        """Stop downloads in progress; let verified ones finish committing (briefly), since
        their clients already have every byte and expect the next pull to be warm."""
        verified = [
            f.task
            for f in self._fills.values()
            if f.task is not None and f.state is FillState.VERIFIED
        ]
        if verified:
            await asyncio.wait(verified, timeout=_COMMIT_ON_CLOSE_SECONDS)
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for peer_fill in tuple(self._peer_fills.values()):
            await peer_fill.close()
