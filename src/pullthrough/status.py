"""`pullthrough status`: what the cache holds and what each upstream last said about its rate
limit, read from the metadata database of a configuration's data directory.

It reads what the server's workers recorded (the server need not be running): per rule, the
upstream's last `ratelimit-limit` / `ratelimit-remaining` headers and until when a 429 blocked
it; and the cached repository, manifest, tag and blob counts with the blobs' total size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pullthrough.config import Settings
from pullthrough.metadata.store import (
    CacheTotals,
    MetadataStore,
    UpstreamStateRecord,
    sqlite_url,
)
from pullthrough.storage.layout import DataLayout

# Headroom shown as low: the share of the limit below which the server warns (the value of
# upstream/throttle.py's LOW_HEADROOM; not imported, so that `status` does not load the client).
LOW_HEADROOM = 0.1


class NoCacheData(Exception):
    """The configuration's data directory holds no metadata database yet."""


@dataclass(frozen=True)
class RateLimit:
    """An upstream's last reported quota: `remaining` of `limit` pulls per `window` seconds."""

    limit: int | None
    remaining: int | None
    window: int | None
    source: str | None
    seen_at: float


@dataclass(frozen=True)
class UpstreamStatus:
    prefix: str
    upstream: str | None  # None for a rule no longer in the configuration
    rate_limit: RateLimit | None
    blocked_until: float | None  # only while it is in the future


@dataclass(frozen=True)
class CacheStatus:
    data_dir: Path
    taken_at: float
    upstreams: list[UpstreamStatus]
    totals: CacheTotals


async def read_status(settings: Settings) -> CacheStatus:
    """The status of the cache `settings` describe; NoCacheData when it never ran."""
    layout = DataLayout(settings.data_dir.resolve())
    if not layout.metadata_file.is_file():
        raise NoCacheData(
            f"no cache data in {layout.root}: `pullthrough serve` has not run with this "
            "configuration (check data_dir, or pass the server's --config)"
        )
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        states = {state.prefix: state for state in await metadata.upstream_states()}
        totals = await metadata.cache_totals()
    finally:
        await metadata.close()
    now = time.time()
    upstreams = [
        _upstream_status(r.prefix, r.upstream, states.pop(r.prefix, None), now)
        for r in settings.rules
    ]
    # A rule gone from the configuration is shown while what it recorded still matters.
    gone = [_upstream_status(prefix, None, state, now) for prefix, state in states.items()]
    upstreams += [u for u in gone if u.rate_limit is not None or u.blocked_until is not None]
    return CacheStatus(layout.root, now, upstreams, totals)


def _upstream_status(
    prefix: str, upstream: str | None, state: UpstreamStateRecord | None, now: float
) -> UpstreamStatus:
    if state is None:
        return UpstreamStatus(prefix, upstream, None, None)
    rate_limit = None
    if state.ratelimit_seen_at is not None:
        rate_limit = RateLimit(
            limit=state.ratelimit_limit,
            remaining=state.ratelimit_remaining,
            window=state.ratelimit_window,
            source=state.ratelimit_source,
            seen_at=state.ratelimit_seen_at,
        )
    blocked = state.blocked_until if state.blocked_until and state.blocked_until > now else None
    return UpstreamStatus(prefix, upstream, rate_limit, blocked)


# -- rendering ------------------------------------------------------------------------------


def status_document(status: CacheStatus) -> dict[str, Any]:
    """The status as `--json` prints it; times are ISO 8601 UTC, sizes bytes, waits seconds."""
    return {
        "data_dir": str(status.data_dir),
        "taken_at": _iso(status.taken_at),
        "rules": [
            {
                "prefix": u.prefix,
                "upstream": u.upstream,
                "configured": u.upstream is not None,
                "rate_limit": None
                if u.rate_limit is None
                else {
                    "limit": u.rate_limit.limit,
                    "remaining": u.rate_limit.remaining,
                    "window_seconds": u.rate_limit.window,
                    "source": u.rate_limit.source,
                    "seen_at": _iso(u.rate_limit.seen_at),
                },
                "blocked_until": None if u.blocked_until is None else _iso(u.blocked_until),
                "retry_after_seconds": None
                if u.blocked_until is None
                else max(1, round(u.blocked_until - status.taken_at)),
            }
            for u in status.upstreams
        ],
        "cache": {
            "repositories": status.totals.repositories,
            "manifests": status.totals.manifests,
            "tags": status.totals.tags,
            "blobs": status.totals.blobs,
            "blob_bytes": status.totals.blob_bytes,
        },
    }


def print_status(status: CacheStatus, console: Console) -> None:
    """The status as tables for people."""
    now = status.taken_at
    table = Table(title=f"Upstreams (data in {status.data_dir})", box=box.SIMPLE_HEAD)
    table.add_column("Rule", style="bold")
    table.add_column("Upstream", overflow="fold")
    table.add_column("Rate limit left", justify="right")
    table.add_column("Seen")
    table.add_column("Blocked (429) until", no_wrap=True)
    for u in status.upstreams:
        limit, seen = "-", "-"
        if u.rate_limit is not None:
            limit = _quota(u.rate_limit)
            seen = _ago(now - u.rate_limit.seen_at)
        blocked = "-"
        if u.blocked_until is not None:
            wait = _span(u.blocked_until - now)
            blocked = f"[red]{_clock(u.blocked_until, now)} (in {wait})[/red]"
        table.add_row(
            escape(u.prefix),
            escape(u.upstream) if u.upstream else "[dim](not in the configuration)[/dim]",
            limit,
            seen,
            blocked,
        )
    console.print(table)
    t = status.totals
    console.print(
        f"Cached: {t.repositories} repositories, {t.manifests} manifests, {t.tags} tags, "
        f"{t.blobs} blobs ({_size(t.blob_bytes)})"
    )


def _quota(rate: RateLimit) -> str:
    remaining = "?" if rate.remaining is None else str(rate.remaining)
    text = f"{remaining}/{'?' if rate.limit is None else rate.limit}"
    if rate.window:
        text += f" per {_span(rate.window)}"
    if rate.limit and rate.remaining is not None and rate.remaining < rate.limit * LOW_HEADROOM:
        text = f"[yellow]{text}[/yellow]"
    return text


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(epoch: float, now: float) -> str:
    """`15:01:04 UTC`, with the date when it is not today's."""
    when, today = datetime.fromtimestamp(epoch, UTC), datetime.fromtimestamp(now, UTC)
    return when.strftime("%H:%M:%S UTC" if when.date() == today.date() else "%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    """`42s`, `5m`, `6h`, `2d`: the largest whole unit."""
    whole = max(0, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
