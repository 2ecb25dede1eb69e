"""Pull times, recorded cheaply: a pull is a dict update in memory on the request path, and
the batch is written to the database every few seconds and when the server stops."""

from __future__ import annotations

import time
from collections.abc import Callable

from pullthrough.cache.batching import BatchRecorder
from pullthrough.metadata.space import SpaceStore

FLUSH_SECONDS = 5.0

# (repository id, digest) -> (last pulled at, pulls)
PullKey = tuple[int, str]
PullCount = tuple[float, int]


class PullRecorder(BatchRecorder[PullKey, PullCount]):
    """Counts manifest pulls per (repository id, digest) and flushes them in batches."""

    what = "pull times"

    def __init__(
        self,
        space: SpaceStore,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval)
        self._space = space
        self._clock = clock

    def record(self, repository_id: int, digest: str) -> None:
        """Note one pull of `digest` through the repository, now. No I/O."""
        self.add((repository_id, digest), (self._clock(), 1))

    def merge(self, earlier: PullCount, later: PullCount) -> PullCount:
        return later[0], earlier[1] + later[1]  # the last recorded time wins

    async def save(self, batch: dict[PullKey, PullCount]) -> None:
        await self._space.record_pulls(batch)
