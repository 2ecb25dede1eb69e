"""The token cache fetches each token once, keeps it until just before expiry, and forgets
refused ones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pullthrough.errors import UpstreamUnavailable
from pullthrough.upstream.tokens import Token, TokenCache, TokenKey

KEY = TokenKey("registry.example", "repository:a:pull")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_gets_share_one_fetch_and_its_error() -> None:
    calls = 0
    release = asyncio.Event()

    async def failing() -> Token:
        nonlocal calls
        calls += 1
        await release.wait()
        raise UpstreamUnavailable("token service down")

    cache = TokenCache()
    waiters = [asyncio.create_task(cache.get(KEY, failing)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert calls == 1
    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert cache.peek(KEY) is None  # errors are not cached: the next get fetches again


async def test_cancelled_waiter_does_not_cancel_the_fetch_for_others() -> None:
    release = asyncio.Event()

    async def slow() -> Token:
        await release.wait()
        return Token("t", 60)

    cache = TokenCache()
    first = asyncio.create_task(cache.get(KEY, slow))
    second = asyncio.create_task(cache.get(KEY, slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()

    assert await second == "t"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_expiry_margin_and_drop() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock, margin=5)
    fetched: list[str] = []

    async def fetch() -> Token:
        fetched.append(f"t{len(fetched) + 1}")
        return Token(fetched[-1], 60)

    assert await cache.get(KEY, fetch) == "t1"
    clock.now = 54.9
    assert await cache.get(KEY, fetch) == "t1"
    clock.now = 55.0
    assert await cache.get(KEY, fetch) == "t2"

    cache.drop(KEY, "t1")  # a stale refusal does not discard the fresher token
    assert cache.peek(KEY) == "t2"
    cache.drop(KEY, "t2")
    assert cache.peek(KEY) is None
    assert fetched == ["t1", "t2"]


def test_token_response_fields() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert Token.from_response({"token": "a", "expires_in": 300}) == Token("a", 300)
    assert Token.from_response({"access_token": "b"}) == Token("b", 60)
    assert Token.from_response({"token": "", "access_token": "c"}) == Token("c", 60)
    # Issued 99.88 s ago (Go's nanosecond timestamps): 200.12 s remain.
    issued = {"token": "d", "expires_in": 300, "issued_at": "2025-01-01T11:58:20.123456789Z"}
    remaining = Token.from_response(issued, now=now)
    assert remaining is not None
    assert remaining.lifetime == pytest.approx(200.123456, abs=1e-3)
    # A token service clock ahead of ours never lengthens the lifetime.
    ahead = (now + timedelta(hours=1)).isoformat()
    assert Token.from_response({"token": "e", "issued_at": ahead}, now=now) == Token("e", 60)
    assert Token.from_response({"nothing": True}) is None
    assert Token.from_response(["token"]) is None
