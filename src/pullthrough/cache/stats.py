"""Hits, misses and bytes per rule, counted in memory as requests are served and added to the
database's totals every second or two."""

from __future__ import annotations

from pullthrough.cache.batching import BatchRecorder
from pullthrough.metadata.stats import CacheStatsStore, RuleStats

FLUSH_SECONDS = 2.0


class StatsRecorder(BatchRecorder[str, RuleStats]):
    what = "cache statistics"

    def __init__(self, store: CacheStatsStore, interval: float = FLUSH_SECONDS) -> None:
        super().__init__(interval)
        self._store = store

    def hit(self, prefix: str, sent: int) -> None:
        self.add(prefix, RuleStats(hits=1, bytes_from_cache=sent))

    def miss(self, prefix: str, sent: int) -> None:
        self.add(prefix, RuleStats(misses=1, bytes_from_upstream=sent))

    def merge(self, earlier: RuleStats, later: RuleStats) -> RuleStats:
        return earlier + later

    async def save(self, batch: dict[str, RuleStats]) -> None:
        await self._store.add(batch)
