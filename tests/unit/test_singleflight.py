"""SingleFlight: one call per key; the same result or the same error for every waiter."""

from __future__ import annotations

import asyncio

import pytest

from pullthrough.cache.singleflight import SingleFlight


async def test_concurrent_callers_share_one_call() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(flights.run("k", work)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 20
    assert calls == 1
    assert len(flights) == 0


async def test_every_waiter_gets_the_same_error_and_the_next_call_retries() -> None:
    flights: SingleFlight[int] = SingleFlight()
    attempts = 0

    async def work() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise ValueError("upstream broke")
        return 7

    results = await asyncio.gather(
        *(flights.run("k", work) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) and str(r) == "upstream broke" for r in results)
    assert await flights.run("k", work) == 7
    assert attempts == 2


async def test_a_cancelled_waiter_does_not_cancel_the_work() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def work() -> int:
        await asyncio.sleep(0.05)
        return 1

    first = asyncio.create_task(flights.run("k", work))
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 1
