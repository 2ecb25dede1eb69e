"""Revisions: how a change made by one process reaches what every other process remembers.

A writer bumps a named counter in the same transaction as its change (`bump`). Each process reads
the counters at most every `REVISION_POLL_SECONDS`, lazily, when something it remembers is about
to be used (`Revisions.value`), and drops what it remembered when the counter moved. So a change
is seen everywhere at most `REVISION_POLL_SECONDS` after it committed; a command that must return
only once it is (`users delete`, `lifecycle run`) waits `propagated()` after committing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

ACCESS = "access"  # principals, passwords, API keys, the registry policy
CONTENT = "content"  # cached manifests, tags and blobs removed (expiry, GC, deletion)
VULNDB = "vulndb"  # advisories imported or synced into the vulnerability database

REVISION_POLL_SECONDS = 0.5


async def bump(conn: AsyncConnection, name: str) -> None:
    """Move counter `name` on, inside the caller's transaction."""
    table = schema.revisions
    now = time.time()
    await conn.execute(
        upsert(
            conn,
            table,
            {"name": name, "value": 1, "updated_at": now},
            {"value": table.c.value + 1, "updated_at": now},
        )
    )


async def propagated(interval: float = REVISION_POLL_SECONDS) -> None:
    """Return once every process has read the counters again since the caller's bump."""
    await asyncio.sleep(interval + 0.05)


class Revisions:
    """One process's view of the counters, at most `interval` seconds old when read."""

    def __init__(
        self,
        engine: AsyncEngine,
        interval: float = REVISION_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._clock = clock
        self._values: dict[str, int] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def value(self, name: str) -> int:
        """Counter `name` as of at most `interval` seconds ago (0 before its first bump)."""
        if self._clock() - self._read_at >= self._interval:
            async with self._lock:
                if self._clock() - self._read_at >= self._interval:
                    started = self._clock()
                    await self._read()
                    self._read_at = started
        return self._values.get(name, 0)

    async def _read(self) -> None:
        table = schema.revisions
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table.c.name, table.c.value))
            self._values = {row.name: int(row.value) for row in rows}
