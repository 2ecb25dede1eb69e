"""Expiring images: the one way lifecycle rules and the size cap take images out of the cache.

An image leaves its repository with its tags and the platform manifests only it uses; the
blobs stay until garbage collection finds nothing references them (`gc.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from pullthrough.metadata.images import CachedImage
from pullthrough.metadata.space import ExpiredSummary, SpaceStore


async def expire_images(space: SpaceStore, images: Iterable[CachedImage]) -> ExpiredSummary:
    """Expire `images`, one transaction per repository; what was removed, added up."""
    by_repository: dict[str, list[str]] = {}
    for image in images:
        by_repository.setdefault(image.repository, []).append(image.digest)
    summary = ExpiredSummary()
    for repository, digests in by_repository.items():
        summary += await space.expire(repository, digests)
    return summary
