"""A 429's Retry-After stops every request to that upstream, in this worker and in the others
sharing the store; rate-limit headers are saved (not on every response) and warned about."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import aiohttp
import pytest

from pullthrough.oci.mediatypes import OCI_MANIFEST
from pullthrough.upstream import RateLimitState, RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream import throttle as throttle_module
from pullthrough.upstream.faults import UpstreamName, UpstreamTooManyRequests
from pullthrough.upstream.throttle import DEFAULT_BLOCK, MAX_BLOCK, Throttle
from tests.unit.fake_registry import FakeRegistry, error_response, manifest_bytes

REPO = "library/nginx"
UPSTREAM = UpstreamName("hub", "registry.example")


class SharedStore:
    """What the metadata database is to the workers: one dict for every throttle given it."""

    def __init__(self) -> None:
        self.blocks: dict[str, float] = {}
        self.rate_limits: list[tuple[str, RateLimitState]] = []
        self.reads = 0

    async def blocked_until(self, upstream: str) -> float | None:
        self.reads += 1
        return self.blocks.get(upstream)

    async def block(self, upstream: str, until: float) -> None:
        self.blocks[upstream] = max(until, self.blocks.get(upstream, 0.0))

    async def save_rate_limit(self, upstream: str, state: RateLimitState) -> None:
        self.rate_limits.append((upstream, state))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.add_manifest(REPO, "1.27", manifest_bytes("1.27"), OCI_MANIFEST)
    async with fake.running():
        yield fake


def worker_client(
    session: aiohttp.ClientSession,
    url: str,
    store: SharedStore | None,
    clock: Callable[[], float] = time.time,
) -> RegistryClient:
    """A registry client as one worker process builds it for the rule `hub`."""
    return RegistryClient(
        session,
        url,
        name="hub",
        timeouts=UpstreamTimeouts(connect=2.0, read=5.0, total_manifest=10.0),
        retry=RetryPolicy(attempts=3, backoff=0.001),
        shared_state=store,
        clock=clock,
    )


async def test_after_a_429_nothing_is_sent_until_retry_after_passes(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.failures.append(error_response(429, "TOOMANYREQUESTS", {"Retry-After": "1"}))
    now = [time.time()]
    client = worker_client(session, registry.url, None, clock=lambda: now[0])

    with pytest.raises(UpstreamTooManyRequests) as first:
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)
    with pytest.raises(UpstreamTooManyRequests) as refused:
        await client.head_manifest(REPO, "1.27", OCI_MANIFEST)

    assert len(registry.requests) == 1
    assert "scripted 429" in first.value.message
    assert first.value.headers == {"Retry-After": "1"}
    assert "retry after 1s" in refused.value.message
    assert "cached content is still served" in refused.value.message
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.status == 429
    assert client.blocked_until is not None

    now[0] += 1.05  # Retry-After has passed
    head = await client.head_manifest(REPO, "1.27", OCI_MANIFEST)
    assert head.digest is not None
    assert len(registry.requests) == 2
    assert client.blocked_until is None


async def test_a_429_seen_by_one_worker_stops_the_others(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    store = SharedStore()
    first_worker = worker_client(session, registry.url, store)
    second_worker = worker_client(session, registry.url, store)
    await second_worker.head_manifest(REPO, "1.27", OCI_MANIFEST)  # it saw no block yet
    registry.failures.append(error_response(429, "TOOMANYREQUESTS", {"Retry-After": "30"}))

    with pytest.raises(UpstreamTooManyRequests):
        await first_worker.get_manifest(REPO, "1.27", OCI_MANIFEST)
    with pytest.raises(UpstreamTooManyRequests) as refused:
        await second_worker.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert len(registry.requests) == 2
    assert set(store.blocks) == {"hub"}
    assert refused.value.headers["Retry-After"] in ("29", "30")
    assert second_worker.blocked_until == store.blocks["hub"]


async def test_a_blocked_worker_does_not_ask_the_store_again() -> None:
    store = SharedStore()
    clock = Clock()
    throttle = Throttle(UPSTREAM, store, clock=clock)
    await throttle.check()
    assert store.reads == 1  # not blocked: the store is asked before each upstream request

    await throttle.observe(429, {"Retry-After": "5"})
    for _ in range(3):
        with pytest.raises(UpstreamTooManyRequests):
            await throttle.check()
    assert store.reads == 1  # blocked: known without asking

    clock.now += 5.0
    await throttle.check()
    assert store.reads == 2


@pytest.mark.parametrize(
    ("retry_after", "blocked_for"),
    [
        ("7", 7.0),
        (formatdate(1_000_000.0 + 90, usegmt=True), 90.0),  # an HTTP date
        (None, DEFAULT_BLOCK),
        ("soon", DEFAULT_BLOCK),
        (str(10 * 24 * 3600), MAX_BLOCK),
    ],
)
async def test_how_long_a_429_blocks(retry_after: str | None, blocked_for: float) -> None:
    store = SharedStore()
    clock = Clock()
    throttle = Throttle(UPSTREAM, store, clock=clock)
    headers = {} if retry_after is None else {"Retry-After": retry_after}

    await throttle.observe(429, headers)

    assert store.blocks["hub"] == clock.now + blocked_for
    error = throttle.refusal("upstream hub (registry.example) answered 429")
    assert error.detail["blocked_until"].endswith("Z")


async def test_other_statuses_do_not_block() -> None:
    store = SharedStore()
    throttle = Throttle(UPSTREAM, store)
    for status in (200, 404, 503):
        await throttle.observe(status, {"Retry-After": "60"})
    await throttle.check()
    assert store.blocks == {}


def quota(remaining: int) -> dict[str, str]:
    return {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": f"{remaining};w=21600"}


async def test_rate_limits_are_saved_on_change_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(throttle_module, "SAVE_INTERVAL", 0.2)
    store = SharedStore()
    throttle = Throttle(UPSTREAM, store)

    await throttle.observe(200, quota(80))
    await asyncio.sleep(0)  # the first save goes out at once
    assert [s.remaining for _, s in store.rate_limits] == [80]
    for remaining in (79, 78, 77):
        await throttle.observe(200, quota(remaining))
    await asyncio.sleep(0)
    assert len(store.rate_limits) == 1  # the next waits for the interval...
    await asyncio.sleep(0.3)  # ... and saves only the latest
    assert [s.remaining for _, s in store.rate_limits] == [80, 77]

    await throttle.observe(200, quota(77))  # unchanged: nothing to save
    await asyncio.sleep(0.3)
    assert len(store.rate_limits) == 2
    assert throttle.rate_limit.remaining == 77


async def test_a_pending_rate_limit_is_saved_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "SAVE_INTERVAL", 60.0)
    store = SharedStore()
    throttle = Throttle(UPSTREAM, store)
    await throttle.observe(200, quota(50))
    await asyncio.sleep(0)
    await throttle.observe(200, quota(49))

    await throttle.close()

    assert [s.remaining for _, s in store.rate_limits] == [50, 49]


async def test_low_headroom_is_warned_about_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttle = Throttle(UPSTREAM, None, clock=clock)
    caplog.set_level(logging.WARNING, logger="pullthrough.upstream.throttle")

    for remaining in (50, 11, 9, 8, 7):
        await throttle.observe(200, quota(remaining))
    clock.now += 21600
    await throttle.observe(200, quota(6))

    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "9 of 100 pulls left per 6h" in warnings[0]
    assert "registry.example" in warnings[0]
    assert "6 of 100" in warnings[1]
