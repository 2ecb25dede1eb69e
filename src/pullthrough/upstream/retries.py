"""How patient the registry client is with an upstream: timeouts, retries, `Retry-After`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# However many attempts are configured, one wait never exceeds this.
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class UpstreamTimeouts:
    """Seconds to wait: for a TCP connection, between two reads, and for a whole manifest GET.

    Blob downloads have no total: a large layer over a slow link is fine while bytes flow.
    """

    connect: float = 10.0
    read: float = 60.0
    total_manifest: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in total for connection errors and 5xx answers, `backoff` seconds apart at
    first, doubling each time, with jitter so that many waiting requests do not retry in step.
    """

    attempts: int = 3
    backoff: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff * 2.0 ** (attempt - 1), MAX_BACKOFF)
        # "Equal jitter": at least half the exponential step, so retries still back off.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delta-seconds or an HTTP-date; None if absent
    or unreadable. A date in the past means 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
