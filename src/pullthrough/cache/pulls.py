"""Pull times, recorded cheaply: a pull is a dict update in memory on the request path, and
the batch is written to the database every few seconds and when the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pullthrough.metadata.space import SpaceStore

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0


class PullRecorder:
    """Counts manifest pulls per (repository id, digest) and flushes them in batches."""

    def __init__(
        self,
        space: SpaceStore,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._space = space
        self._interval = interval
        self._clock = clock
        self._pending: dict[tuple[int, str], tuple[float, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, repository_id: int, digest: str) -> None:
        """Note one pull of `digest` through the repository, now. No I/O."""
        key = (repository_id, digest)
        _, count = self._pending.get(key, (0.0, 0))
        self._pending[key] = (self._clock(), count + 1)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Flush every `interval` seconds in the background until `close()`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._flush_periodically(), name="pull recorder"
            )

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not record pull times; retrying in %.0fs", self._interval)

    async def flush(self) -> None:
        """Write the pulls recorded so far; on failure they are kept for the next flush."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self._space.record_pulls(batch)
        except BaseException:
            for key, (pulled_at, count) in batch.items():
                later_at, later_count = self._pending.get(key, (0.0, 0))
                self._pending[key] = (max(pulled_at, later_at), count + later_count)
            raise

    async def close(self) -> None:
        """Stop the periodic flush and write what is left."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception:
            log.exception("could not record the last %d pull times", len(self._pending))
