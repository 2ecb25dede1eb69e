"""Cache statistics over time: each rule's hits, misses and bytes per five-minute bucket, added
in the same transaction as the running totals (`metadata/stats.py`) and kept for two weeks,
for the dashboard's charts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

BUCKET_SECONDS = 300.0
RETENTION_SECONDS = 14 * 86_400.0


class Counts(Protocol):
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def bytes_from_cache(self) -> int: ...
    @property
    def bytes_from_upstream(self) -> int: ...


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """What one rule served in the interval starting at `start`."""

    start: float
    hits: int = 0
    misses: int = 0
    bytes_from_cache: int = 0
    bytes_from_upstream: int = 0

    def __add__(self, other: HistoryPoint) -> HistoryPoint:
        return HistoryPoint(
            self.start,
            self.hits + other.hits,
            self.misses + other.misses,
            self.bytes_from_cache + other.bytes_from_cache,
            self.bytes_from_upstream + other.bytes_from_upstream,
        )


def bucket_of(moment: float, step: float = BUCKET_SECONDS) -> float:
    return math.floor(moment / step) * step


async def add_to_history(
    conn: AsyncConnection,
    batch: Mapping[str, Counts],
    now: float,
    retention: float = RETENTION_SECONDS,
) -> None:
    """Add each rule's counts to the bucket of `now`, and drop buckets past the retention; called
    inside the transaction that adds them to the totals."""
    table = schema.cache_stats_history
    bucket = bucket_of(now)
    for prefix, counts in sorted(batch.items()):
        values = {
            "prefix": prefix,
            "bucket": bucket,
            "hits": counts.hits,
            "misses": counts.misses,
            "bytes_from_cache": counts.bytes_from_cache,
            "bytes_from_upstream": counts.bytes_from_upstream,
        }
        update = {
            "hits": table.c.hits + counts.hits,
            "misses": table.c.misses + counts.misses,
            "bytes_from_cache": table.c.bytes_from_cache + counts.bytes_from_cache,
            "bytes_from_upstream": table.c.bytes_from_upstream + counts.bytes_from_upstream,
        }
        await conn.execute(upsert(conn, table, values, update))
    await conn.execute(delete(table).where(table.c.bucket < bucket_of(now - retention)))


class StatsHistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def series(
        self, since: float, until: float, step: float
    ) -> dict[str, list[HistoryPoint]]:
        """Each rule's points from `since` to `until`, one per `step` seconds (a multiple of
        the bucket), intervals without requests included as zeros; rules by prefix."""
        table = schema.cache_stats_history
        first = bucket_of(since, step)
        async with self._engine.connect() as conn:
            rows = list(
                await conn.execute(
                    select(table)
                    .where(table.c.bucket >= first, table.c.bucket <= until)
                    .order_by(table.c.prefix, table.c.bucket)
                )
            )
        starts = [first + i * step for i in range(int((until - first) // step) + 1)]
        found: dict[str, dict[float, HistoryPoint]] = {}
        for row in rows:
            start = bucket_of(float(row.bucket), step)
            points = found.setdefault(row.prefix, {})
            point = HistoryPoint(
                start,
                int(row.hits),
                int(row.misses),
                int(row.bytes_from_cache),
                int(row.bytes_from_upstream),
            )
            points[start] = points[start] + point if start in points else point
        return {
            prefix: [points.get(start, HistoryPoint(start)) for start in starts]
            for prefix, points in sorted(found.items())
        }
