"""An upstream's 429 `Retry-After` honoured, and its rate-limit headers kept, across workers.

When an upstream answers 429, its `Throttle` refuses every further request to it until the time
it asked for (`DEFAULT_BLOCK` seconds when it named none), in this process at once and in the
other worker processes through a `ThrottleStore` (the metadata database they share). A refused
request fails with a 429 that says when to retry; cached content never gets this far, so it
keeps being served.

What it costs: nothing for content served from the cache; one read of the shared store per
upstream request while this process believes the upstream is not blocked, so that a 429 seen by
another worker is honoured before this one sends anything.

It also keeps the last Docker Hub quota the upstream reported (`ratelimit-limit`,
`ratelimit-remaining`), saves it to the store when it changes (at most once per
`SAVE_INTERVAL`, in the background), and warns once per quota window when headroom runs low.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from pullthrough.upstream.faults import UpstreamName, UpstreamTooManyRequests
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.retries import parse_retry_after

log = logging.getLogger(__name__)

# A 429 without a usable Retry-After blocks the upstream this long: long enough that a burst of
# pulls does not hammer a registry that is refusing us, short enough to notice it recovered.
DEFAULT_BLOCK = 10.0
# A Retry-After beyond this is capped: a misconfigured upstream cannot silence itself for days.
# Six hours is Docker Hub's whole rate-limit window.
MAX_BLOCK = 6 * 3600.0
# Rate-limit headers arrive with every response; the store hears of a change at most this often.
SAVE_INTERVAL = 1.0
# ... and of an unchanged quota this often, so that `pullthrough status` shows when it was seen.
RESAVE_UNCHANGED = 60.0
# Headroom below this share of the limit is logged as a warning, once per quota window.
LOW_HEADROOM = 0.1
# The quiet period between two low-headroom warnings when the upstream names no window.
DEFAULT_WARNING_PERIOD = 3600.0


class ThrottleStore(Protocol):
    """Where throttles of all worker processes share what upstreams said, keyed by rule prefix."""

    async def blocked_until(self, upstream: str) -> float | None:
        """Epoch seconds until which `upstream` asked not to be sent requests, if ever."""

    async def block(self, upstream: str, until: float) -> None:
        """Record that `upstream` asked not to be sent requests until `until` (keep a later one)."""

    async def save_rate_limit(self, upstream: str, state: RateLimitState) -> None:
        """Record the quota `upstream` last reported."""


class Throttle:
    """Whether one upstream may be sent a request now, and what it said about its quota."""

    def __init__(
        self,
        upstream: UpstreamName,
        store: ThrottleStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate_limit = RateLimitState()
        self._upstream = upstream
        self._store = store
        self._clock = clock
        self._blocked_until = 0.0
        self._saved: RateLimitState | None = None
        self._saved_at = -math.inf
        self._saving: asyncio.Task[None] | None = None
        self._warned_at: float | None = None

    @property
    def blocked_until(self) -> float | None:
        """Until when (epoch seconds) this process knows the upstream is blocked, else None."""
        return self._blocked_until if self._blocked_until > self._clock() else None

    # -- 429 and Retry-After ----------------------------------------------------------------

    async def check(self) -> None:
        """Return when a request may go upstream; raise UpstreamTooManyRequests while a 429's
        Retry-After (seen by this or any worker sharing the store) has not passed."""
        now = self._clock()
        if self._blocked_until <= now and self._store is not None:
            shared = await self._store.blocked_until(self._upstream.name)
            if shared is not None and shared > max(self._blocked_until, now):
                self._blocked_until = shared
                log.info(
                    "%s asked another worker to wait (429); no requests to it until %s",
                    self._upstream,
                    _clock_time(shared),
                    extra=self._log_fields(),
                )
        if self._blocked_until > now:
            raise self.refusal(f"{self._upstream} is rate-limiting requests (it answered 429)")

    async def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take note of an upstream response: its rate-limit headers, and a 429's Retry-After.

        A block is in the shared store when this returns, so no other worker sends a request
        after the 429's answer reaches a client.
        """
        state = RateLimitState.from_headers(headers, now=self._clock())
        if state is not None:
            self._record_rate_limit(state)
        if status == 429:
            await self._block(headers.get("Retry-After"))

    def refusal(self, cause: str) -> UpstreamTooManyRequests:
        """The error for a request refused while the upstream is blocked: `cause`, then when to
        retry, in words and as a `Retry-After` header."""
        until = self._blocked_until
        seconds = max(1, math.ceil(until - self._clock()))
        return UpstreamTooManyRequests(
            f"{cause}; pullthrough sends it no request until {_clock_time(until)}: retry after "
            f"{seconds}s (cached content is still served)",
            retry_after=float(seconds),
            detail={
                "upstream": self._upstream.name,
                "status": 429,
                "blocked_until": _iso(until),
            },
            headers={"Retry-After": str(seconds)},
        )

    async def _block(self, retry_after_header: str | None) -> None:
        asked = parse_retry_after(
            retry_after_header, now=datetime.fromtimestamp(self._clock(), UTC)
        )
        wait = min(DEFAULT_BLOCK if asked is None else asked, MAX_BLOCK)
        until = self._clock() + wait
        if until <= self._blocked_until:
            return
        self._blocked_until = until
        said = (
            f"Retry-After: {retry_after_header.strip()}"
            if retry_after_header is not None and asked is not None
            else f"no usable Retry-After, so {DEFAULT_BLOCK:g}s"
        )
        log.warning(
            "%s answered 429 (%s); no requests to it until %s",
            self._upstream,
            said,
            _clock_time(until),
            extra=self._log_fields(),
        )
        if self._store is not None:
            await self._store.block(self._upstream.name, until)

    # -- rate-limit headers -----------------------------------------------------------------

    def _record_rate_limit(self, state: RateLimitState) -> None:
        self.rate_limit = state
        self._warn_if_low(state)
        if self._store is not None and self._saving is None and self._needs_saving():
            self._saving = asyncio.get_running_loop().create_task(
                self._save_rate_limits(), name=f"save rate limit of {self._upstream.name}"
            )

    def _needs_saving(self) -> bool:
        saved, current = self._saved, self.rate_limit
        if current.seen_at is None:
            return False
        if saved is None or _quota(saved) != _quota(current):
            return True
        return saved.seen_at is None or current.seen_at - saved.seen_at >= RESAVE_UNCHANGED

    async def _save_rate_limits(self) -> None:
        """Save the latest quota, no sooner than SAVE_INTERVAL after the previous save, until
        what is saved is what was seen last."""
        try:
            while self._store is not None and self._needs_saving():
                wait = self._saved_at + SAVE_INTERVAL - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                state = self.rate_limit
                self._saved_at = self._clock()
                await self._store.save_rate_limit(self._upstream.name, state)
                self._saved = state
        except Exception:
            log.exception("saving the rate limit of %s failed", self._upstream)
        finally:
            self._saving = None

    def _warn_if_low(self, state: RateLimitState) -> None:
        if state.limit is None or state.remaining is None or state.limit <= 0:
            return
        if state.remaining >= state.limit * LOW_HEADROOM:
            self._warned_at = None  # recovered: warn again next time it runs low
            return
        now = self._clock()
        period = float(state.window) if state.window else DEFAULT_WARNING_PERIOD
        if self._warned_at is not None and now - self._warned_at < period:
            return
        self._warned_at = now
        window = f" per {_duration(state.window)}" if state.window else ""
        counted = f" (counted for {state.source})" if state.source else ""
        log.warning(
            "%s rate limit is running low: %d of %d pulls left%s%s; when none are left, pulls "
            "of uncached images fail with 429 (a credential on the rule usually raises the "
            "limit)",
            self._upstream,
            state.remaining,
            state.limit,
            window,
            counted,
            extra={
                **self._log_fields(),
                "ratelimit_limit": state.limit,
                "ratelimit_remaining": state.remaining,
                "ratelimit_window": state.window,
            },
        )

    async def close(self) -> None:
        """Save a quota still waiting for its turn (at shutdown)."""
        task, self._saving = self._saving, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._store is not None and self._needs_saving():
            await self._store.save_rate_limit(self._upstream.name, self.rate_limit)
            self._saved = self.rate_limit

    def _log_fields(self) -> dict[str, object]:
        return {
            "upstream": self._upstream.name,
            "blocked_until": _iso(self._blocked_until) if self._blocked_until else None,
        }


def _quota(state: RateLimitState) -> tuple[int | None, int | None, int | None, str | None]:
    return state.limit, state.remaining, state.window, state.source


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
