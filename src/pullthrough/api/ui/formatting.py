"""How figures read on the dashboard: sizes, times, ratios."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: int | float | None) -> str:
    """`1.5 MiB`; bytes below 1 KiB as they are."""
    if value is None:
        return "—"
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def iso(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def moment(value: float | None) -> str:
    """`2026-12-06 04:10 UTC`, or a dash for never."""
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: float | None, now: float | None = None) -> str:
    if value is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - value)
    for limit, unit in ((60, "s"), (3600, "min"), (86_400, "h")):
        if seconds < limit:
            divisor = {"s": 1, "min": 60, "h": 3600}[unit]
            return f"{int(seconds // divisor)} {unit} ago"
    return f"{int(seconds // 86_400)} d ago"


def ratio(part: int, whole: int) -> str:
    """A percentage with one decimal, `—` when there is nothing to divide."""
    if whole <= 0:
        return "—"
    return f"{100 * part / whole:.1f}%"


def short_digest(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}:{hex_digest[:12]}" if hex_digest else digest


FILTERS: dict[str, Callable[..., str]] = {
    "size": size,
    "iso": iso,
    "moment": moment,
    "ago": ago,
    "short_digest": short_digest,
}
