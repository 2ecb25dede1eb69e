"""Cache statistics per rule, summed over worker processes: hits, misses, and the bytes sent
to clients from disk and from upstream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.stats_history import add_to_history
from pullthrough.metadata.upserts import upsert


@dataclass(frozen=True, slots=True)
class RuleStats:
    hits: int = 0
    misses: int = 0
    bytes_from_cache: int = 0
    bytes_from_upstream: int = 0

    def __add__(self, other: RuleStats) -> RuleStats:
        return RuleStats(
            self.hits + other.hits,
            self.misses + other.misses,
            self.bytes_from_cache + other.bytes_from_cache,
            self.bytes_from_upstream + other.bytes_from_upstream,
        )


@dataclass(frozen=True, slots=True)
class StatsReport:
    since: float | None
    rules: dict[str, RuleStats] = field(default_factory=dict)

    @property
    def total(self) -> RuleStats:
        return sum(self.rules.values(), RuleStats())


class CacheStatsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, batch: dict[str, RuleStats]) -> None:
        """Add each rule's counts to what is stored; counts of a rule deleted since they were
        made are dropped, so its statistics disappear with it."""
        table, rules = schema.cache_stats, schema.pull_through_rules
        now = time.time()
        async with self._engine.begin() as conn:
            existing: set[str] = set(
                (
                    await conn.execute(
                        select(rules.c.prefix).where(rules.c.prefix.in_(sorted(batch)))
                    )
                ).scalars()
            )
            for prefix, stats in sorted(batch.items()):
                if prefix not in existing:
                    continue
                values = {
                    "prefix": prefix,
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "bytes_from_cache": stats.bytes_from_cache,
                    "bytes_from_upstream": stats.bytes_from_upstream,
                    "since": now,
                    "updated_at": now,
                }
                update = {
                    "hits": table.c.hits + stats.hits,
                    "misses": table.c.misses + stats.misses,
                    "bytes_from_cache": table.c.bytes_from_cache + stats.bytes_from_cache,
                    "bytes_from_upstream": table.c.bytes_from_upstream + stats.bytes_from_upstream,
                    "updated_at": now,
                }
                await conn.execute(upsert(conn, table, values, update))
            await add_to_history(
                conn, {prefix: stats for prefix, stats in batch.items() if prefix in existing}, now
            )

    async def read(self) -> StatsReport:
        table = schema.cache_stats
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(select(table).order_by(table.c.prefix)))
        return StatsReport(
            since=min((row.since for row in rows), default=None),
            rules={
                row.prefix: RuleStats(
                    int(row.hits),
                    int(row.misses),
                    int(row.bytes_from_cache),
                    int(row.bytes_from_upstream),
                )
                for row in rows
            },
        )
