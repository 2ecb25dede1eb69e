"""The stored rules (seeded once, conflicts named), the rule book's reload, cache statistics
and upstream health, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from pullthrough.cache.health import HealthRecorder
from pullthrough.cache.rulebook import RuleBook
from pullthrough.cache.stats import StatsRecorder
from pullthrough.config import RuleConfig
from pullthrough.metadata.rules import RuleConflict, RuleStore
from pullthrough.metadata.stats import CacheStatsStore, RuleStats
from pullthrough.metadata.store import MetadataStore
from pullthrough.metadata.upstream_state import UpstreamHealth
from tests.unit.space_support import metadata

__all__ = ["metadata"]

HUB = RuleConfig(prefix="docker-hub", upstream="https://registry-1.docker.io", default=True)
GHCR = RuleConfig(prefix="ghcr", upstream="https://ghcr.io")
QUAY = RuleConfig(prefix="quay", upstream="https://quay.io", tag_ttl="1m")


async def test_rules_are_seeded_once_and_then_the_store_is_the_truth(
    metadata: MetadataStore,
) -> None:
    store = RuleStore(metadata.engine)
    assert await store.seed([HUB, GHCR]) is True
    assert [s.rule for s in await store.all()] == [HUB, GHCR]

    assert await store.delete("ghcr") is True
    # A restart with the same configuration does not bring the deleted rule back.
    assert await store.seed([HUB, GHCR]) is False
    assert [s.rule for s in await store.all()] == [HUB]


async def test_create_put_and_delete_name_what_clashes(metadata: MetadataStore) -> None:
    store = RuleStore(metadata.engine)
    await store.seed([HUB])

    created = await store.create(QUAY)
    assert created.rule.tag_ttl == 60.0
    with pytest.raises(RuleConflict, match="'quay' exists"):
        await store.create(QUAY)
    second_default = RuleConfig(prefix="mirror", upstream="https://mirror.gcr.io", default=True)
    with pytest.raises(RuleConflict, match="'docker-hub' is already the default"):
        await store.create(second_default)
    with pytest.raises(RuleConflict, match="already the default"):
        await store.put(second_default)

    changed = QUAY.model_copy(update={"tag_ttl": 0.0})
    stored, new = await store.put(changed)
    assert (new, stored.rule.tag_ttl, stored.created_at) == (False, 0.0, created.created_at)
    assert stored.updated_at >= created.updated_at
    _, new = await store.put(GHCR)
    assert new is True
    # The default may move to a rule that already is it.
    _, new = await store.put(HUB.model_copy(update={"tag_ttl": 10.0}))
    assert new is False

    assert await store.delete("quay") is True
    assert await store.delete("quay") is False
    assert await store.get("quay") is None
    assert [s.rule.prefix for s in await store.all()] == ["docker-hub", "ghcr"]


async def test_the_rule_book_rereads_the_store_after_its_interval(
    metadata: MetadataStore,
) -> None:
    store = RuleStore(metadata.engine)
    await store.seed([HUB])
    now = [0.0]
    book = RuleBook(store, interval=1.0, clock=lambda: now[0])
    assert (await book.router()).resolve("ghcr/org/app").rule == HUB  # no ghcr rule yet

    await store.create(GHCR)
    assert (await book.router()).resolve("ghcr/org/app").rule == HUB  # within the interval
    now[0] = 1.0
    assert (await book.router()).resolve("ghcr/org/app").rule == GHCR

    await store.delete("ghcr")
    book.invalidate()
    assert (await book.router()).resolve("ghcr/org/app").rule == HUB
    assert (await book.router()).rule_for_prefix("ghcr") is None


async def test_statistics_add_up_over_recorders(metadata: MetadataStore) -> None:
    await RuleStore(metadata.engine).seed([GHCR, QUAY])
    store = CacheStatsStore(metadata.engine)
    assert (await store.read()).since is None
    first, second = StatsRecorder(store), StatsRecorder(store)  # two workers
    first.miss("ghcr", 100)
    first.hit("ghcr", 100)
    second.hit("ghcr", 40)
    second.hit("quay", 7)
    await first.close()
    await second.close()

    report = await store.read()
    assert report.rules == {
        "ghcr": RuleStats(hits=2, misses=1, bytes_from_cache=140, bytes_from_upstream=100),
        "quay": RuleStats(hits=1, misses=0, bytes_from_cache=7, bytes_from_upstream=0),
    }
    assert report.total == RuleStats(3, 1, 147, 100)
    assert report.since is not None


async def test_upstream_health_keeps_the_latest_success_and_error(
    metadata: MetadataStore,
) -> None:
    store = metadata.upstreams
    clock = iter([10.0, 20.0, 30.0, 40.0])
    recorder = HealthRecorder(store, clock=lambda: next(clock))
    recorder.succeeded("ghcr")  # 10
    recorder.failed("ghcr", "ghcr (ghcr.io) timed out")  # 20
    recorder.failed("quay", "quay (quay.io) refused the connection")  # 30
    await recorder.flush()
    health = await store.health()
    assert health["ghcr"] == UpstreamHealth(10.0, "ghcr (ghcr.io) timed out", 20.0)
    assert health["ghcr"].reachable is False
    assert health["quay"].reachable is False

    recorder.succeeded("ghcr")  # 40: it answers again; the last error is still shown
    await recorder.flush()
    health = await store.health()
    assert health["ghcr"] == UpstreamHealth(40.0, "ghcr (ghcr.io) timed out", 20.0)
    assert health["ghcr"].reachable is True
    assert UpstreamHealth().reachable is None


class _FlakyStatsStore(CacheStatsStore):
    def __init__(self, real: CacheStatsStore) -> None:
        self.real = real
        self.down = True

    async def add(self, batch: dict[str, RuleStats]) -> None:
        if self.down:
            raise RuntimeError("database gone")
        await self.real.add(batch)


async def test_a_deleted_rules_statistics_disappear_with_it(metadata: MetadataStore) -> None:
    rules = RuleStore(metadata.engine)
    await rules.seed([GHCR, QUAY])
    store = CacheStatsStore(metadata.engine)
    await store.add({"ghcr": RuleStats(hits=3), "quay": RuleStats(misses=1)})
    late = StatsRecorder(store)  # a worker that counted a pull just before the deletion
    late.hit("ghcr", 10)

    assert await rules.delete("ghcr") is True
    await late.close()  # its last flush comes after the deletion
    assert (await store.read()).rules == {"quay": RuleStats(misses=1)}

    await rules.create(GHCR)  # a new rule with the old prefix starts from nothing
    assert (await store.read()).rules == {"quay": RuleStats(misses=1)}


async def test_a_failed_flush_keeps_the_batch_for_the_next(metadata: MetadataStore) -> None:
    await RuleStore(metadata.engine).seed([GHCR])
    flaky = _FlakyStatsStore(CacheStatsStore(metadata.engine))
    recorder = StatsRecorder(flaky)
    recorder.hit("ghcr", 5)
    with pytest.raises(RuntimeError):
        await recorder.flush()
    recorder.miss("ghcr", 1)
    assert recorder.pending == 1

    flaky.down = False
    await recorder.flush()
    assert (await flaky.real.read()).rules == {"ghcr": RuleStats(1, 1, 5, 1)}
