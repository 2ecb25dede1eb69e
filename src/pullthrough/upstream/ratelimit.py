"""Docker Hub's pull rate-limit headers (`ratelimit-limit: 100;w=21600`), as last seen."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_QUOTA = re.compile(r"^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")


@dataclass(frozen=True)
class RateLimitState:
    """An upstream's last reported quota: `limit` pulls per `window` seconds, `remaining` left.

    `seen_at` is the wall-clock time (epoch seconds) of the response that carried the headers;
    None everywhere until an upstream has sent them (most registries never do).
    """

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None
    source: str | None = None  # `docker-ratelimit-source`: the IP or account being counted
    seen_at: float | None = None

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, now: float | None = None
    ) -> RateLimitState | None:
        """The state the headers report, or None when they carry no rate-limit headers."""
        limit = _parse_quota(headers.get("ratelimit-limit"))
        remaining = _parse_quota(headers.get("ratelimit-remaining"))
        if limit is None and remaining is None:
            return None
        window = limit[1] if limit is not None else None
        if window is None and remaining is not None:
            window = remaining[1]
        return cls(
            limit=limit[0] if limit is not None else None,
            remaining=remaining[0] if remaining is not None else None,
            window=window,
            source=headers.get("docker-ratelimit-source"),
            seen_at=time.time() if now is None else now,
        )


def _parse_quota(value: str | None) -> tuple[int, int | None] | None:
    if value is None:
        return None
    match = _QUOTA.match(value)
    if match is None:
        return None
    count, window = match.groups()
    return int(count), int(window) if window is not None else None
