"""`pullthrough status`: the admin API's `/status` document as JSON, or as tables for people —
each rule's upstream (reachable, last error, rate-limit headroom, 429 block), hit statistics, and
what the cache holds — with a warning for every upstream whose rate limit is running low.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pullthrough.cli import render
from pullthrough.cli.options import Output, OutputOption, ServerOption, TokenOption, admin_session

# The share of the limit below which headroom counts as low (upstream/throttle.py's
# LOW_HEADROOM, where the server logs the same warning).
LOW_HEADROOM = 0.1


def status(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Each rule's upstream (reachable, last error, rate-limit headroom, 429 block), hit
    statistics, and what the cache holds; warns when an upstream's rate limit runs low."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/status")
    if output is Output.json:
        render.print_json(document)
    else:
        print_status(document, render.console())


def register(app: typer.Typer) -> None:
    app.command()(status)


def print_status(document: dict[str, Any], console: Console, now: datetime | None = None) -> None:
    """The status as tables for people; times relative to `now`."""
    now = now or datetime.now(UTC)
    upstreams = document.get("upstreams") or []
    console.print(_upstream_table(upstreams, now))
    stats = document.get("stats")
    if stats:
        console.print(_stats_table(stats))
    console.print(
        f"Cached: {document.get('repositories', 0)} repositories, "
        f"{document.get('images', 0)} images, {document.get('blobs', 0)} blobs "
        f"({render.size(document.get('stored_bytes', 0))})"
    )
    for warning in headroom_warnings(upstreams):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")


def headroom_warnings(upstreams: list[dict[str, Any]]) -> list[str]:
    """One line per upstream with less than LOW_HEADROOM of its rate limit left."""
    warnings = []
    for upstream in upstreams:
        rate = upstream.get("rate_limit")
        if rate and is_low(rate):
            per = f" per {render.span(rate['window'])}" if rate.get("window") else ""
            warnings.append(
                f"rule {upstream['prefix']}: {upstream.get('upstream')} has "
                f"{rate['remaining']} of {rate['limit']} pulls left{per}; uncached pulls "
                "may soon be refused (add a credential with a higher limit, or wait)"
            )
    return warnings


def is_low(rate: dict[str, Any]) -> bool:
    limit, remaining = rate.get("limit"), rate.get("remaining")
    return bool(limit and remaining is not None and remaining < limit * LOW_HEADROOM)


def quota(rate: dict[str, Any]) -> str:
    """`7/100 per 6h`, in yellow when low."""
    remaining, limit = rate.get("remaining"), rate.get("limit")
    text = f"{'?' if remaining is None else remaining}/{'?' if limit is None else limit}"
    if rate.get("window"):
        text += f" per {render.span(rate['window'])}"
    return f"[yellow]{text}[/yellow]" if is_low(rate) else text


def _upstream_table(upstreams: list[dict[str, Any]], now: datetime) -> Table:
    table = Table(title="Upstreams", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Rule", style="bold")
    table.add_column("Upstream", overflow="fold")
    table.add_column("Reachable")
    table.add_column("Last error", overflow="fold")
    table.add_column("Rate limit left", justify="right")
    table.add_column("Seen")
    table.add_column("Blocked (429) until", no_wrap=True)
    for upstream in upstreams:
        rate = upstream.get("rate_limit")
        table.add_row(
            render.cell(upstream["prefix"]),
            render.cell(upstream.get("upstream")),
            _reachable(upstream.get("reachable")),
            _last_error(upstream, now),
            quota(rate) if rate else render.NONE,
            render.ago(rate.get("seen_at"), now) if rate else render.NONE,
            _blocked(upstream.get("blocked_until"), now),
        )
    return table


def _reachable(value: bool | None) -> str:
    if value is None:
        return "[dim]not tried[/dim]"
    return "[green]yes[/green]" if value else "[red]no[/red]"


def _last_error(upstream: dict[str, Any], now: datetime) -> str:
    error = upstream.get("last_error")
    if not error:
        return render.NONE
    return f"{escape(str(error))} ({render.ago(upstream.get('last_error_at'), now)})"


def _blocked(value: str | None, now: datetime) -> str:
    until = render.parse_time(value)
    if until is None or until <= now:
        return render.NONE
    wait = render.span((until - now).total_seconds())
    return f"[red]{render.clock(value, now)} (in {wait})[/red]"


def _stats_table(stats: dict[str, Any]) -> Table:
    since = stats.get("since")
    title = f"Requests since {since}" if since else "Requests"
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Rule", style="bold")
    for column in ("Hits", "Misses", "Hit ratio", "From cache", "From upstream"):
        table.add_column(column, justify="right")
    rows = [*(stats.get("rules") or []), {"prefix": "total", **(stats.get("total") or {})}]
    for row in rows:
        hits, misses = int(row.get("hits", 0)), int(row.get("misses", 0))
        ratio = f"{hits / (hits + misses):.0%}" if hits + misses else render.NONE
        table.add_row(
            render.cell(row["prefix"]),
            str(hits),
            str(misses),
            ratio,
            render.size(row.get("bytes_from_cache", 0)),
            render.size(row.get("bytes_from_upstream", 0)),
            end_section=row is rows[-2] if len(rows) > 1 else False,
        )
    return table
