"""Coalesce concurrent calls for one key onto one shared task.

Every waiter gets the same result or the same exception; a waiter that gives up (is cancelled)
does not cancel the shared work, and the next call after completion starts afresh.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:

            async def call() -> T:
                return await work()

            task = asyncio.ensure_future(call())
            self._running[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # a failure nobody awaited any more is still retrieved

    def __len__(self) -> int:
        return len(self._running)
