"""What an image is, as lifecycle rules look at it: a top-level manifest a repository holds,
with its tags and times. `SpaceStore` reads them; `lifecycle/` decides about them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedImage:
    """A top-level manifest in one repository: a single-platform image, or an index together
    with its platform manifests (which expire with it)."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    # When the cache first stored it: ECR's "pushed" time, for a cache.
    cached_at: float
    # The last pull of the image or any of its platform manifests; None if never pulled since
    # it was cached.
    last_pulled_at: float | None
    children: tuple[str, ...] = ()
    size: int = 0  # bytes of its blobs, shared ones included

    @property
    def tagged(self) -> bool:
        return bool(self.tags)
