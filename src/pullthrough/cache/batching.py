"""Counters kept in memory on the request path and written to the database in batches: every
few seconds in the background, and when the server stops. A failed write keeps the batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class BatchRecorder(ABC, Generic[K, V]):
    """Pending entries by key; subclasses say how two entries merge and how a batch is saved."""

    what = "records"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._pending: dict[K, V] = {}
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def merge(self, earlier: V, later: V) -> V:
        """One entry standing for both."""

    @abstractmethod
    async def save(self, batch: dict[K, V]) -> None:
        """Write `batch` to the database."""

    def add(self, key: K, value: V) -> None:
        """Note `value` for `key`. No I/O."""
        earlier = self._pending.get(key)
        self._pending[key] = value if earlier is None else self.merge(earlier, value)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Flush every `interval` seconds in the background until `close()`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._flush_periodically(), name=f"{self.what} recorder"
            )

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not record %s; retrying in %.0fs", self.what, self._interval)

    async def flush(self) -> None:
        """Write what was recorded so far; on failure it is kept for the next flush."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self.save(batch)
        except BaseException:
            for key, value in batch.items():
                later = self._pending.get(key)
                self._pending[key] = value if later is None else self.merge(value, later)
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
            log.exception("could not record the last %d %s", len(self._pending), self.what)
