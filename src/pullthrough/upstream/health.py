"""Where a registry client reports whether its upstream answered: kept for `status` and the
admin API, so an operator sees an unreachable upstream before users do."""

from __future__ import annotations

from typing import Protocol


class HealthSink(Protocol):
    def succeeded(self, upstream: str) -> None:
        """`upstream` (a rule prefix) answered a request (a 404 is an answer too)."""

    def failed(self, upstream: str, message: str) -> None:
        """`upstream` could not be reached, timed out, failed (5xx) or refused us (429)."""
