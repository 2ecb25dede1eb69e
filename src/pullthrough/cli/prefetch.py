"""`pullthrough prefetch IMAGE…`: warm the cache through the server's registry API, with a
progress bar per image and a summary of what came from the cache and what from upstream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgressBars

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    client_settings,
    error_line,
    fail,
    read_text,
)
from pullthrough.client.admin import AdminError, ClientSettings, authorization
from pullthrough.client.naming import CacheNaming
from pullthrough.client.prefetch import (
    DirectNaming,
    ImageResult,
    Naming,
    Platform,
    Prefetcher,
    merged,
)
from pullthrough.config import RuleConfig

# A cold blob streams as the server fetches it: allow a slow upstream a long pause.
READ_TIMEOUT = 300.0


class ProgressBars:
    """A rich progress bar per image, on stderr (the summary goes to stdout)."""

    def __init__(self, bars: RichProgressBars) -> None:
        self._bars = bars
        self._tasks: dict[str, TaskID] = {}
        self._blobs: dict[str, tuple[int, int]] = {}

    def started(self, reference: str) -> None:
        self._tasks[reference] = self._bars.add_task(reference, total=None, status="manifests")

    def planned(self, reference: str, total_bytes: int | None, blobs: int) -> None:
        self._blobs[reference] = (0, blobs)
        self._bars.update(self._tasks[reference], total=total_bytes, status=f"0/{blobs} blobs")

    def advanced(self, reference: str, nbytes: int) -> None:
        self._bars.advance(self._tasks[reference], nbytes)

    def blob_done(self, reference: str) -> None:
        done, blobs = self._blobs[reference]
        self._blobs[reference] = (done + 1, blobs)
        self._bars.update(self._tasks[reference], status=f"{done + 1}/{blobs} blobs")

    def finished(self, result: ImageResult) -> None:
        task = self._tasks[result.reference]
        if result.ok:
            done = self._bars.tasks[self._tasks[result.reference]].completed
            self._bars.update(task, total=done, status="[green]done[/green]")
        else:
            self._bars.update(task, status="[red]failed[/red]")


def _references(images: list[str], file: Path | None) -> list[str]:
    references = list(images)
    if file is not None:
        for line in read_text(file, "the image list").splitlines():
            text = line.split("#", 1)[0].strip()
            if text:
                references.append(text)
    # Each image once, in the order given.
    return list(dict.fromkeys(references))


def _platforms(platform: list[str] | None, all_platforms: bool) -> list[Platform]:
    if platform and all_platforms:
        fail("give --platform or --all-platforms, not both", EXIT_USAGE)
    try:
        return [Platform.parse(text) for text in platform or ()]
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def prefetch(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image references: nginx:1.27, ghcr.io/org/app@sha256:…, or names through "
            "the cache like docker-hub/library/nginx.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read image references from FILE (one a line, # comments; - stdin).",
        ),
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(help="Only this platform of a multi-platform image (repeatable)."),
    ] = None,
    all_platforms: Annotated[
        bool, typer.Option(help="Every platform a multi-platform image lists (the default).")
    ] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Downloads (and images) at once.")
    ] = 4,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Warm the cache: fetch each image's manifests and blobs through the server.

    Every blob is verified against its digest and the bytes are discarded; the summary says
    what came from the cache and what from upstream. Exit 1 when any image failed.
    """
    references = _references(images or [], file)
    if not references:
        fail("name at least one image, or a file of them with -f", EXIT_USAGE)
    platforms = _platforms(platform, all_platforms)
    settings = client_settings(server, token)
    naming = _naming(ctx, settings, server, token)
    started = time.monotonic()
    results = asyncio.run(_warm(settings, naming, references, platforms, concurrency))
    total = merged(results, time.monotonic() - started)
    if output is Output.json:
        render.print_json({"images": [r.as_json() for r in results], "total": total.as_json()})
    else:
        print_summary(results, total)
    for result in results:
        if result.error is not None:
            typer.echo(f"pullthrough: {result.reference}: {result.error}", err=True)
    if any(not result.ok for result in results):
        raise typer.Exit(EXIT_REFUSED)


def _naming(
    ctx: typer.Context, settings: ClientSettings, server: str | None, token: str | None
) -> Naming:
    """The server's rules map `nginx:1.27` to its cache name. A puller the admin API refuses
    may still warm images written through the cache (`<host>/docker-hub/library/nginx`)."""
    with admin_session(ctx, server, token) as client:
        try:
            listed = client.get("/rules")["rules"]
        except AdminError as exc:
            if exc.status not in (401, 403):
                raise
            why = f"the admin API refused to list them: {error_line(exc)}"
            typer.echo(
                f"pullthrough: cannot read the rules ({why}); only images written as "
                f"{settings.cache_host}/<prefix>/<repository> can be warmed",
                err=True,
            )
            return DirectNaming(settings.cache_host, "its admin API refused to list them")
    rules = [
        RuleConfig.model_validate({k: v for k, v in rule.items() if k in RuleConfig.model_fields})
        for rule in listed
    ]
    return CacheNaming(rules, settings.cache_host)


async def _warm(
    settings: ClientSettings,
    naming: Naming,
    references: list[str],
    platforms: list[Platform],
    concurrency: int,
) -> list[ImageResult]:
    headers = {}
    credentials = authorization(settings.token)
    if credentials:
        # The registry challenges for Bearer tokens but takes the same Basic credentials.
        headers["Authorization"] = credentials
    bars = RichProgressBars(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    timeout = httpx.Timeout(60.0, read=READ_TIMEOUT)
    async with httpx.AsyncClient(
        base_url=settings.server, headers=headers, timeout=timeout, follow_redirects=True
    ) as http:
        with bars:
            prefetcher = Prefetcher(
                http,
                naming,
                platforms=platforms,
                concurrency=concurrency,
                progress=ProgressBars(bars),
            )
            return await prefetcher.warm_all(references)


def print_summary(results: list[ImageResult], total: ImageResult) -> None:
    table = render.table(
        "image", "result", "platforms", "manifests", "blobs", "bytes", "from", "time"
    )
    rows = [*results, total] if len(results) > 1 else results
    for result in rows:
        table.add_row(
            render.cell(result.name or result.reference),
            "ok" if result.ok else "[red]failed[/red]",
            render.cell(result.platforms),
            str(result.manifests.total),
            str(result.blobs.total),
            render.size(result.bytes),
            origin(result),
            f"{result.seconds:.1f}s",
            end_section=result is results[-1],
        )
    render.console().print(table)


def origin(result: ImageResult) -> str:
    """`upstream`, `cache`, or how they mixed, over the manifests and blobs fetched."""
    cache = result.manifests.cache + result.blobs.cache
    upstream = result.manifests.upstream + result.blobs.upstream
    unknown = result.manifests.unknown + result.blobs.unknown
    counts = [
        (n, word)
        for n, word in ((upstream, "upstream"), (cache, "cache"), (unknown, "unknown"))
        if n
    ]
    if not counts:
        return render.NONE
    if len(counts) == 1:
        return counts[0][1]
    return ", ".join(f"{n} {word}" for n, word in counts)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("prefetch")(prefetch)
