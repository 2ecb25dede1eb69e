"""How the API commands show answers: rich tables for people, the API's JSON for scripts, and
the small formatters (sizes, durations, times) both kinds of table share."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

NONE = "-"


def console() -> Console:
    """Standard output; wide enough for digests when it is not a terminal (pipes, tests)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def print_json(document: Any) -> None:
    """What `--output json` prints: the API's answer unchanged, so scripts see its schema."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def table(*columns: str, title: str | None = None) -> Table:
    """A plain table; cells are text (escape anything from the server with `cell`)."""
    result = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
    return result


def print_rows(
    columns: Sequence[str], rows: Iterable[Sequence[str]], empty: str, *, title: str | None = None
) -> None:
    """A table of `rows`, or the `empty` hint (which says how to add one) when there are none."""
    result = table(*columns, title=title)
    for row in rows:
        result.add_row(*row)
    out = console()
    if result.row_count:
        out.print(result)
    else:
        out.print(empty)


def print_fields(pairs: Iterable[tuple[str, str]], *, title: str | None = None) -> None:
    """One object as a two-column table: field, value."""
    result = Table(box=None, show_header=False, title=title, title_justify="left")
    result.add_column(style="bold")
    result.add_column(overflow="fold")
    for name, value in pairs:
        result.add_row(name, value)
    console().print(result)


def cell(value: Any) -> str:
    """A value from the server as table text: `-` for nothing, markup escaped."""
    if value is None or value == "" or value == []:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def size(count: int | None) -> str:
    """`512 B`, `1.5 KiB`, `3.2 GiB`."""
    if count is None:
        return NONE
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def span(seconds: float) -> str:
    """`42s`, `5m`, `6h`, `2d`: the largest whole unit."""
    whole = max(0, round(seconds))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= length:
            return f"{whole // length}{unit}"
    return f"{whole}s"


def duration(seconds: float | None) -> str:
    """A rule's duration setting: `-` when unset, `0` (always revalidate), else `5m`, `1h30m`."""
    if seconds is None:
        return NONE
    whole = round(seconds)
    if whole == 0:
        return "0"
    parts = []
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= length:
            parts.append(f"{whole // length}{unit}")
            whole %= length
    return "".join(parts)


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (`2026-11-28T17:00:00Z`) as an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def ago(value: str | None, now: datetime | None = None) -> str:
    """`just now`, `5m ago`, `2d ago`; `-` for never."""
    when = parse_time(value)
    if when is None:
        return NONE
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def clock(value: str | None, now: datetime | None = None) -> str:
    """`15:01:04 UTC`, with the date when it is not today's."""
    when = parse_time(value)
    if when is None:
        return NONE
    today = (now or datetime.now(UTC)).date()
    return when.strftime("%H:%M:%S UTC" if when.date() == today else "%Y-%m-%d %H:%M:%S UTC")


def short_digest(digest: str) -> str:
    """`sha256:0123456789ab`: enough to tell images apart in a table (json has the whole)."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest
