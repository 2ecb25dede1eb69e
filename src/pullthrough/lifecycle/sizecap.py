"""The size cap: over `max_size`, evict least-recently-pulled images until under low water.

Only bytes that eviction really frees count: a blob another image still uses stays, so
evicting an image whose layers are shared frees nothing and the next image goes too. Images
cached within the grace period are never evicted (a client is probably still pulling them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pullthrough.lifecycle.expire import expire_images
from pullthrough.lifecycle.gc import SETTLE_SECONDS, GcReport, collect_garbage
from pullthrough.metadata.images import CachedImage
from pullthrough.metadata.space import SpaceStore
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.locks import Locks


@dataclass(frozen=True, slots=True)
class SizeCapReport:
    """What enforcing the cap did; `gc` is None when the store was under the cap."""

    max_size: int
    low_water_bytes: int
    bytes_before: int
    bytes_after: int
    evicted: tuple[CachedImage, ...] = ()
    gc: GcReport | None = None


def least_recently_pulled_first(image: CachedImage) -> tuple[float, float, str, str]:
    """Eviction order: last pull (or, never pulled, when cached), oldest first."""
    last_used = image.last_pulled_at if image.last_pulled_at is not None else image.cached_at
    return (last_used, image.cached_at, image.repository, image.digest)


async def eviction_order(space: SpaceStore, cached_before: float) -> list[CachedImage]:
    """Every repository's images cached before `cached_before`, least recently pulled first."""
    images = [
        image
        for _, repository in await space.repositories()
        for image in await space.images(repository)
        if image.cached_at < cached_before
    ]
    return sorted(images, key=least_recently_pulled_first)


async def enforce_size_cap(
    space: SpaceStore,
    driver: BlobDriver,
    max_size: int,
    low_water: float = 0.8,
    grace: float = 600.0,
    now: float | None = None,
    *,
    locks: Locks | None = None,
    settle: float = SETTLE_SECONDS,
) -> SizeCapReport:
    """When stored blobs exceed `max_size` bytes, expire least-recently-pulled images (across
    all repositories) and collect garbage until at most `low_water * max_size` remain."""
    now = time.time() if now is None else now
    low_water_bytes = int(low_water * max_size)
    before = await space.stored_bytes()
    if before <= max_size:
        return SizeCapReport(max_size, low_water_bytes, before, before)
    cutoff = now - grace
    # Collection frees exactly the unreferenced blobs older than the grace period.
    reclaimable = await space.unreferenced_bytes(cutoff)
    evicted: list[CachedImage] = []
    for image in await eviction_order(space, cutoff):
        if before - reclaimable <= low_water_bytes:
            break
        await expire_images(space, [image])
        evicted.append(image)
        reclaimable = await space.unreferenced_bytes(cutoff)
    gc = await collect_garbage(space, driver, grace, now, locks=locks, settle=settle)
    after = await space.stored_bytes()
    return SizeCapReport(max_size, low_water_bytes, before, after, tuple(evicted), gc)
