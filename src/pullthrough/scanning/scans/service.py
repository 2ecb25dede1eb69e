"""The scan service of one worker: a queue in the database, a few scans at a time per worker.

Whoever wants an image scanned (a first cache in a scanned repository, `pullthrough scan`, the
gate, a vulnerability database update) queues its platform images as rows (metadata/scans.py).
Every worker's pool claims queued rows, oldest first, at most `per_worker` at a time, each under
the lock set's `scan` lock of its digest, so one worker of all replicas scans an image at a
time; a scan whose worker died (its lock free again) is queued anew. Scans run as tasks of their
own beside the request handlers: a pull never waits for one, except a gated pull (gate.py).

When the vulnerability database's revision moves, one worker (under the `scan-rescan` lease)
queues every finished scan matched against an older database: the findings of cached images
change without a re-pull. Inventories are kept per layer, so a rescan reads no layer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from pullthrough.errors import RegistryError
from pullthrough.metadata.inventory import platform_name
from pullthrough.metadata.leases import LeaseStore
from pullthrough.metadata.scanning import ScanningStore
from pullthrough.metadata.scans import DONE, FAILED, QUEUED, SCANNING, ScanRow, ScanStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.metadata.templates import TemplateStore
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.model import Inventory
from pullthrough.scanning.scans.job import (
    ImageSource,
    MatchFindings,
    NotAnImage,
    ReadInventory,
    image_layers,
    scan_image,
)
from pullthrough.storage.locks import ExclusiveLock, Locks
from pullthrough.telemetry import metrics

log = logging.getLogger(__name__)

VULNDB_REVISION = "vulndb"
RESCAN_LEASE = "scan-rescan"

# Scans one worker runs at once: each reads layers (through the cache) and matches packages.
SCANS_PER_WORKER = 2
# How often an idle pool looks for queued scans (a scan queued by this worker starts at once).
POLL_SECONDS = 1.0
# How long a scan may be `scanning` with its lock free before it counts as abandoned.
_ABANDONED_AFTER = 5.0
# How often waiting for a result looks at the database.
WAIT_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class ScanLimits:
    per_worker: int = SCANS_PER_WORKER
    poll_seconds: float = POLL_SECONDS


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """What was queued for one request: the platform images of an image or index."""

    repository: str
    digest: str
    platforms: tuple[tuple[str, str | None], ...]  # (platform image digest, platform)


class ScanService:
    def __init__(
        self,
        metadata: MetadataStore,
        source: ImageSource,
        read_inventory: ReadInventory,
        match: MatchFindings,
        locks: Locks,
        limits: ScanLimits | None = None,
    ) -> None:
        self.store = ScanStore(metadata.engine)
        self.configuration = ScanningStore(metadata.engine)
        self._templates = TemplateStore(metadata.engine)
        self._metadata = metadata
        self._source = source
        self._read_inventory = read_inventory
        self._match = match
        self._locks = locks
        self._limits = limits or ScanLimits()
        self._leases = LeaseStore(metadata.engine)
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._pool: asyncio.Task[None] | None = None
        self._rescanned_for = -1
        self._stopped = False

    @property
    def running(self) -> int:
        """Scans this worker runs now."""
        return len(self._running)

    # -- asking for scans --------------------------------------------------------------------

    async def request(self, repository: str, digest: str) -> ScanRequest:
        """Queue a scan of `digest` in `repository`: of the image, or of every platform image of
        an index (its manifest is fetched through the cache when not cached)."""
        media_type, content = await self._source.manifest(repository, digest)
        parsed = parse_manifest(content, media_type)
        platforms: list[tuple[str, str | None]] = []
        if parsed.is_index:
            for child in parsed.children:
                name = platform_name(child.platform)
                if name is not None:  # attestations (`unknown/unknown`) are no image to scan
                    platforms.append((child.digest, name))
        else:
            platforms.append((digest, None))
        for child_digest, _ in platforms:
            await self.queue(repository, child_digest)
        return ScanRequest(repository, digest, tuple(platforms))

    async def queue(self, repository: str, digest: str, *, again: bool = True) -> None:
        """Queue a scan of platform image `digest` (nothing when one is queued or running, or
        when it was scanned and not `again`)."""
        if await self.store.queue(repository, digest, again=again):
            self._wake.set()

    def first_cached(self, repository: str, media_type: str, digest: str) -> None:
        """An image manifest was cached for the first time (a client's pull fetched it): scan it
        when the scanning configuration says so, or the creation template that made its
        repository has `scan_on_pull`. Returns at once; never raises."""
        if self._stopped or media_type.endswith(("index.v1+json", "manifest.list.v2+json")):
            return  # an index's platform images are scanned as clients pull them
        self._spawn(self._queue_if_configured(repository, digest), f"queue scan {digest}")

    async def _queue_if_configured(self, repository: str, digest: str) -> None:
        try:
            configuration = await self.configuration.get()
            if not configuration.scans_on_first_cache(repository):
                settings = await self._templates.settings(repository)
                if settings is None or not settings.scan_on_pull:
                    return
            await self.queue(repository, digest, again=False)
        except Exception:
            log.exception("queueing a scan of %s@%s failed", repository, digest)

    async def wait(self, digests: tuple[str, ...], within: float) -> dict[str, ScanRow]:
        """The scans of `digests` once none is queued or scanning, or as they are when `within`
        seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            rows = await self.store.many(digests)
            pending = [d for d in digests if d not in rows or rows[d].state in (QUEUED, SCANNING)]
            if not pending or loop.time() >= deadline:
                return rows
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - loop.time())))

    async def inventory(self, repository: str, digest: str) -> Inventory:
        """What platform image `digest` holds (for its SBOM): layers already read are not read
        again (inventories are kept per layer)."""
        _platform, layers = await image_layers(self._source, repository, digest)
        return await self._read_inventory(repository, layers)

    # -- the pool ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start this worker's pool (in a running event loop)."""
        if self._pool is None:
            self._pool = asyncio.get_running_loop().create_task(self._run_pool(), name="scans")

    async def close(self) -> None:
        """Stop: running scans are cancelled and go back to the queue for another worker."""
        self._stopped = True
        tasks = [t for t in (self._pool, *self._running.values(), *self._side_tasks) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_pool(self) -> None:
        last_recovery = 0.0
        while not self._stopped:
            try:
                await self._rescan_if_database_moved()
                if time.monotonic() - last_recovery > _ABANDONED_AFTER:
                    last_recovery = time.monotonic()
                    await self._requeue_abandoned()
                    counted = metrics.current()
                    if counted is not None:
                        counted.scan_queue.set(await self.store.count_queued())
                await self._claim_queued()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the scan pool failed to look for work; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._limits.poll_seconds)

    async def _claim_queued(self) -> None:
        free = self._limits.per_worker - len(self._running)
        if free <= 0:
            return
        for row in await self.store.queued(free * 4):
            if len(self._running) >= self._limits.per_worker:
                return
            if row.digest in self._running:
                continue
            lock = self._locks.named("scan", row.digest)
            if not await lock.try_acquire():
                continue
            if not await self.store.claim(row.digest, self._holder):
                await lock.release()
                continue
            task = asyncio.get_running_loop().create_task(
                self._scan(row, lock), name=f"scan {row.digest}"
            )
            self._running[row.digest] = task
            task.add_done_callback(functools.partial(self._finished, row.digest))

    def _finished(self, digest: str, _task: object) -> None:
        self._running.pop(digest, None)
        if not self._stopped:
            self._wake.set()

    async def _scan(self, row: ScanRow, lock: ExclusiveLock) -> None:
        started = time.monotonic()
        try:
            # Read before matching: a database change while it matches moves the revision on
            # again, and the image is scanned once more.
            revision = await self._vulndb_revision()
            outcome = await scan_image(
                self._source, self._read_inventory, self._match, row.repository, row.digest
            )
            await self.store.finish(
                row.digest,
                platform=outcome.platform,
                findings=outcome.findings,
                vulndb_revision=revision,
            )
            _count("done")
            log.info(
                "scanned %s@%s in %.1fs: %d finding(s)",
                row.repository,
                row.digest,
                time.monotonic() - started,
                len(outcome.findings),
                extra={"repository": row.repository, "digest": row.digest},
            )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.requeue(row.digest, self._holder))
            raise
        except (RegistryError, NotAnImage) as exc:
            await self._fail(row, str(getattr(exc, "message", exc)))
        except Exception as exc:
            log.exception("scanning %s@%s failed", row.repository, row.digest)
            await self._fail(row, f"{type(exc).__name__}: {exc}")
        finally:
            await lock.release()

    async def _fail(self, row: ScanRow, reason: str) -> None:
        _count("failed")
        log.warning(
            "scanning %s@%s failed: %s",
            row.repository,
            row.digest,
            reason,
            extra={"repository": row.repository, "digest": row.digest},
        )
        await self.store.fail(row.digest, reason)

    async def _requeue_abandoned(self) -> None:
        now = time.time()
        for row in await self.store.scanning():
            if row.digest in self._running:
                continue
            if row.started_at is not None and now - row.started_at < _ABANDONED_AFTER:
                continue
            if await self._locks.named("scan", row.digest).is_free():
                log.info("the scan of %s was abandoned by its worker; queued again", row.digest)
                await self.store.requeue(row.digest, None)
                self._wake.set()

    async def _vulndb_revision(self) -> int:
        return await self._metadata.revisions.value(VULNDB_REVISION)

    async def _rescan_if_database_moved(self) -> None:
        revision = await self._vulndb_revision()
        if revision == self._rescanned_for:
            return
        if await self._leases.acquire(RESCAN_LEASE, self._holder, ttl=60.0):
            try:
                stale = []
                for row in await self.store.older_than(revision):
                    # An image expired or collected since is not fetched again to be rescanned.
                    if await self._metadata.manifests.in_repository(row.repository, row.digest):
                        stale.append(row)
                        await self.store.queue(row.repository, row.digest)
                    else:
                        await self.store.forget(row.digest)
                if stale:
                    log.info(
                        "vulnerability database revision %d: %d cached image(s) queued for "
                        "a rescan",
                        revision,
                        len(stale),
                    )
            finally:
                await self._leases.release(RESCAN_LEASE, self._holder)
        self._rescanned_for = revision

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)


SETTLED = (DONE, FAILED)


def _count(result: str) -> None:
    counted = metrics.current()
    if counted is not None:
        counted.scans.labels(result).inc()
