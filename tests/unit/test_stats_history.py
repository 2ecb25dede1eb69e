"""Cache statistics over time: what each rule served per five-minute bucket, summed over the
workers that flushed it, in the intervals a chart asks for, with old buckets dropped."""

from __future__ import annotations

import time

from pullthrough.cache.stats import StatsRecorder
from pullthrough.config import RuleConfig
from pullthrough.metadata.rules import RuleStore
from pullthrough.metadata.stats import CacheStatsStore, RuleStats
from pullthrough.metadata.stats_history import (
    BUCKET_SECONDS,
    HistoryPoint,
    StatsHistoryStore,
    add_to_history,
    bucket_of,
)
from pullthrough.metadata.store import MetadataStore
from tests.unit.space_support import metadata

__all__ = ["metadata"]

GHCR = RuleConfig(prefix="ghcr", upstream="https://ghcr.io")
DAY = 86_400.0
T0 = 1_800_000_000.0  # a bucket's start


async def _add(metadata: MetadataStore, batch: dict[str, RuleStats], now: float) -> None:
    async with metadata.engine.begin() as conn:
        await add_to_history(conn, batch, now)


async def test_counts_land_in_their_bucket_and_sum_per_interval(metadata: MetadataStore) -> None:
    await _add(metadata, {"ghcr": RuleStats(hits=2, bytes_from_cache=200)}, T0 + 10)
    await _add(metadata, {"ghcr": RuleStats(misses=1, bytes_from_upstream=50)}, T0 + 200)
    await _add(metadata, {"ghcr": RuleStats(hits=1, bytes_from_cache=5)}, T0 + 400)
    await _add(metadata, {"quay": RuleStats(hits=7)}, T0 + 3 * BUCKET_SECONDS + 1)
    history = StatsHistoryStore(metadata.engine)

    fine = await history.series(T0, T0 + 3 * BUCKET_SECONDS, BUCKET_SECONDS)
    assert fine["ghcr"] == [
        HistoryPoint(T0, 2, 1, 200, 50),
        HistoryPoint(T0 + BUCKET_SECONDS, 1, 0, 5, 0),
        HistoryPoint(T0 + 2 * BUCKET_SECONDS),
        HistoryPoint(T0 + 3 * BUCKET_SECONDS),
    ]
    assert [p.hits for p in fine["quay"]] == [0, 0, 0, 7]

    hourly = await history.series(bucket_of(T0, 3600), T0 + 3600, 3600)
    assert sum(p.hits for p in hourly["ghcr"]) == 3
    assert [p.start for p in hourly["ghcr"]] == [bucket_of(T0, 3600), bucket_of(T0, 3600) + 3600]


async def test_buckets_past_the_retention_are_dropped_as_new_ones_are_written(
    metadata: MetadataStore,
) -> None:
    await _add(metadata, {"ghcr": RuleStats(hits=1)}, T0)
    await _add(metadata, {"ghcr": RuleStats(hits=1)}, T0 + 13 * DAY)
    history = StatsHistoryStore(metadata.engine)
    assert sum(p.hits for p in (await history.series(T0, T0 + 15 * DAY, DAY))["ghcr"]) == 2

    await _add(metadata, {"ghcr": RuleStats(hits=1)}, T0 + 15 * DAY)
    kept = (await history.series(T0, T0 + 15 * DAY, DAY))["ghcr"]
    assert sum(p.hits for p in kept) == 2  # the first bucket is gone
    assert kept[0].hits == 0


async def test_the_recorders_flush_fills_the_history_of_existing_rules(
    metadata: MetadataStore,
) -> None:
    await RuleStore(metadata.engine).seed([GHCR])
    recorder = StatsRecorder(CacheStatsStore(metadata.engine))
    recorder.hit("ghcr", 100)
    recorder.miss("ghcr", 30)
    recorder.hit("deleted-rule", 1)
    await recorder.close()

    now = time.time()
    series = await StatsHistoryStore(metadata.engine).series(now - DAY, now, DAY)
    assert list(series) == ["ghcr"]
    assert sum(p.hits for p in series["ghcr"]) == 1
    assert sum(p.bytes_from_upstream for p in series["ghcr"]) == 30
