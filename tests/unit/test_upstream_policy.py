"""Retry-After, backoff and rate-limit header parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pullthrough.upstream import RateLimitState, RetryPolicy
from pullthrough.upstream.retries import parse_retry_after


def test_retry_after_delta_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_backoff_grows_exponentially_with_jitter() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.2)

    for attempt, step in [(1, 0.2), (2, 0.4), (3, 0.8)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(step / 2 <= delay <= step for delay in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "99;w=21600"},
            (100, 99, 21600),
        ),
        ({"ratelimit-limit": "200"}, (200, None, None)),
        ({"ratelimit-remaining": "5;w=60"}, (None, 5, 60)),
    ],
)
def test_rate_limit_headers(headers: dict[str, str], expected: tuple[object, ...]) -> None:
    state = RateLimitState.from_headers(headers, now=123.0)

    assert state is not None
    assert (state.limit, state.remaining, state.window) == expected
    assert state.seen_at == 123.0


def test_responses_without_rate_limit_headers_change_nothing() -> None:
    assert RateLimitState.from_headers({"content-type": "x"}) is None
    assert RateLimitState.from_headers({"ratelimit-limit": "garbage"}) is None
