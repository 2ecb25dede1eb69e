"""The space keeper: lifecycle expiry, then the size cap, then garbage collection.

`pullthrough lifecycle preview|run` call it directly; a running server calls it every
`lifecycle.interval` under a lease, so that one worker (or replica) starts it per interval. A
run holds the lock set's `lifecycle` lock throughout (renewed while it runs, on PostgreSQL), so
two runs never overlap, whichever replica or command started them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.config import LifecycleConfig
from pullthrough.lifecycle.expire import expire_images
from pullthrough.lifecycle.gc import GcReport, collect_garbage
from pullthrough.lifecycle.lifecycle_policy import Expiry, LifecyclePolicy, LifecyclePolicyError
from pullthrough.lifecycle.sizecap import SizeCapReport, enforce_size_cap
from pullthrough.metadata.images import CachedImage
from pullthrough.metadata.leases import LeaseStore
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.templates import TemplateStore
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.locks import Locks, holding
from pullthrough.telemetry import metrics

log = logging.getLogger(__name__)

LEASE = "lifecycle"


@dataclass
class LifecycleReport:
    expired: list[Expiry] = field(default_factory=list)
    size_cap: SizeCapReport | None = None
    gc: GcReport | None = None
    skipped: list[str] = field(default_factory=list)  # repositories with a broken policy

    @property
    def collections(self) -> tuple[GcReport, ...]:
        """Every garbage collection the run made: the size cap's, then the final one."""
        cap = self.size_cap.gc if self.size_cap is not None else None
        return tuple(gc for gc in (cap, self.gc) if gc is not None)

    @property
    def blobs_deleted(self) -> int:
        return sum(gc.blobs_deleted + gc.orphan_files_deleted for gc in self.collections)

    @property
    def bytes_freed(self) -> int:
        return sum(gc.bytes_freed for gc in self.collections)

    def expired_by_repository(self) -> dict[str, list[Expiry]]:
        """The policies' expiries grouped by repository, in name order."""
        grouped: dict[str, list[Expiry]] = {}
        for expiry in sorted(self.expired, key=lambda e: (e.image.repository, e.image.digest)):
            grouped.setdefault(expiry.image.repository, []).append(expiry)
        return grouped


class SpaceKeeper:
    def __init__(
        self,
        engine: AsyncEngine,
        driver: BlobDriver,
        config: LifecycleConfig,
        locks: Locks | None = None,
    ) -> None:
        # The fills' lock set: GC takes a blob's fill lock to delete it. None only when no
        # server shares the storage.
        self._locks = locks
        self._space = SpaceStore(engine)
        self._templates = TemplateStore(engine)
        self._leases = LeaseStore(engine)
        self._driver = driver
        self._config = config

    async def preview(
        self, repository: str | None = None, now: float | None = None
    ) -> tuple[list[Expiry], list[str]]:
        """What the lifecycle policies would expire now, and why; nothing is changed."""
        now = time.time() if now is None else now
        names = (
            [repository] if repository else [name for _, name in await self._space.repositories()]
        )
        expiries: list[Expiry] = []
        broken: list[str] = []
        for name in names:
            settings = await self._templates.settings(name)
            if settings is None or not settings.lifecycle_policy:
                continue
            try:
                policy = LifecyclePolicy.parse(settings.lifecycle_policy)
            except LifecyclePolicyError as exc:
                log.error("repository %s has an invalid lifecycle policy: %s", name, exc)
                broken.append(name)
                continue
            expiries.extend(policy.evaluate(await self._space.images(name), now))
        return expiries, broken

    async def run(self, repository: str | None = None, now: float | None = None) -> LifecycleReport:
        """Expire, cap and collect; waits while another run (another replica's) is going on."""
        if self._locks is None:
            return await self._counted_run(repository, now)
        async with holding(self._locks.named(LEASE)):
            return await self._counted_run(repository, now)

    async def _counted_run(self, repository: str | None, now: float | None) -> LifecycleReport:
        """`_run`, its duration and what it removed counted in the metrics."""
        began = time.monotonic()
        counted = metrics.current()
        try:
            report = await self._run(repository, now)
        except Exception:
            if counted is not None:
                counted.lifecycle_ran(time.monotonic() - began, ok=False)
            raise
        if counted is not None:
            counted.lifecycle_ran(
                time.monotonic() - began,
                ok=True,
                expired=len(report.expired),
                evicted=len(report.size_cap.evicted) if report.size_cap is not None else 0,
                blobs_deleted=report.blobs_deleted,
                bytes_freed=report.bytes_freed,
            )
        return report

    async def _run(self, repository: str | None, now: float | None) -> LifecycleReport:
        now = time.time() if now is None else now
        expiries, broken = await self.preview(repository, now)
        await self._expire(expiries)
        report = LifecycleReport(expired=expiries, skipped=broken)
        if self._config.max_size is not None:
            report.size_cap = await enforce_size_cap(
                self._space,
                self._driver,
                max_size=self._config.max_size,
                low_water=self._config.low_water,
                grace=self._config.gc_grace,
                now=now,
                locks=self._locks,
            )
        report.gc = await collect_garbage(
            self._space,
            self._driver,
            grace=self._config.gc_grace,
            now=now,
            locks=self._locks,
        )
        return report

    async def _expire(self, expiries: Sequence[Expiry]) -> None:
        by_repository: dict[str, list[CachedImage]] = {}
        for expiry in expiries:
            by_repository.setdefault(expiry.image.repository, []).append(expiry.image)
        for name, images in by_repository.items():
            await expire_images(self._space, images)
            log.info(
                "expired %d image(s) from %s",
                len(images),
                name,
                extra={"repository": name, "digests": [image.digest for image in images]},
            )

    async def run_periodically(self) -> None:
        """Every `interval`: take the lease and run. Cancel to stop."""
        # Unique per process even where hosts (containers) share a name and a pid.
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        interval = self._config.interval
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self._leases.acquire(LEASE, holder, ttl=max(interval, 60.0)):
                    continue
                report = await self.run()
                log.info(
                    "lifecycle run: %d expired, %d blobs collected",
                    len(report.expired),
                    report.gc.blobs_deleted if report.gc else 0,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lifecycle run failed; trying again in %.0fs", interval)
