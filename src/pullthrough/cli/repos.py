"""`pullthrough repos|images|tags`: what the cache holds, through the admin API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pullthrough.cli import render
from pullthrough.cli.options import (
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
)
from pullthrough.client.admin import AdminClient, AdminError, path_segment

repos_app = typer.Typer(help="Cached repositories (admin API).", no_args_is_help=True)
images_app = typer.Typer(help="Cached images of a repository (admin API).", no_args_is_help=True)
tags_app = typer.Typer(help="Cached tags of a repository (admin API).", no_args_is_help=True)

RepositoryArgument = Annotated[
    str, typer.Argument(help="A cached repository, e.g. docker-hub/library/nginx.")
]


@repos_app.command("list")
def repos_list(
    ctx: typer.Context,
    prefix: Annotated[
        str | None, typer.Option(help="Only repositories under this prefix, e.g. docker-hub.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Cached repositories: images, tags, size, and when they were last pulled."""
    params = {k: v for k, v in (("prefix", prefix), ("limit", limit)) if v is not None}
    with admin_session(ctx, server, token) as client:
        document = client.get("/repositories", params=params)
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("repository", "rule", "images", "tags", "size", "last pulled", "pulls"),
        (
            (
                render.cell(repo["name"]),
                render.cell(repo.get("rule")),
                str(repo.get("image_count", 0)),
                str(repo.get("tag_count", 0)),
                render.size(repo.get("size_bytes")),
                render.ago(repo.get("last_pulled_at")),
                str(repo.get("pull_count", 0)),
            )
            for repo in document["repositories"]
        ),
        "nothing cached yet"
        + (f" under {prefix}" if prefix else "")
        + ": pull through the server, or warm it with `pullthrough prefetch IMAGE`",
    )


@repos_app.command("get")
def repos_get(
    ctx: typer.Context,
    name: RepositoryArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """One cached repository."""
    with admin_session(ctx, server, token) as client:
        repo = client.get(f"/repositories/{path_segment(name)}")
    if output is Output.json:
        render.print_json(repo)
        return
    render.print_fields(
        [
            ("repository", render.cell(repo["name"])),
            ("rule", render.cell(repo.get("rule"))),
            ("images", str(repo.get("image_count", 0))),
            ("tags", str(repo.get("tag_count", 0))),
            ("size", render.size(repo.get("size_bytes"))),
            ("created", render.cell(repo.get("created_at"))),
            ("last pulled", render.cell(repo.get("last_pulled_at"))),
            ("pulls", str(repo.get("pull_count", 0))),
        ]
    )


@images_app.command("list")
def images_list(
    ctx: typer.Context,
    repository: RepositoryArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """A repository's cached images: digest, tags, size, platforms, when cached and pulled."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/images", params={"repository": repository})
        scans = _scan_summaries(client, repository)
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("digest", "tags", "size", "platforms", "cached", "last pulled", "pulls", "findings"),
        (_image_row(image, scans.get(image["digest"])) for image in document["images"]),
        f"no images cached in {repository}",
    )


def _scan_summaries(client: AdminClient, repository: str) -> dict[str, dict[str, Any]]:
    """Each image's scan status and severity counts; none from a server that does not scan."""
    try:
        document = client.get("/scan-summaries", params={"repository": repository})
    except AdminError:
        return {}
    return {summary["imageDigest"]: summary for summary in document["images"]}


def _image_row(image: dict[str, Any], scan: dict[str, Any] | None = None) -> tuple[str, ...]:
    return (
        render.short_digest(image["digest"]),
        render.cell(image.get("tags")),
        render.size(image.get("size_bytes")),
        render.cell(image.get("platforms")),
        render.ago(image.get("cached_at")),
        render.ago(image.get("last_pulled_at")),
        str(image.get("pull_count", 0)),
        _scan_cell(scan),
    )


def _scan_cell(scan: dict[str, Any] | None) -> str:
    """`2 CRITICAL, 1 HIGH`, `none`, or the scan's state when it has no result."""
    if scan is None or scan["status"] == "NOT_SCANNED":
        return render.NONE
    counts = scan.get("findingSeverityCounts") or {}
    summary = ", ".join(f"{n} {severity}" for severity, n in counts.items() if n)
    if scan["status"] != "COMPLETE":
        state = scan["status"].lower().replace("_", " ")
        return f"{state} ({summary})" if summary else state
    return summary or "none"


@tags_app.command("list")
def tags_list(
    ctx: typer.Context,
    repository: RepositoryArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """A repository's cached tags and the digests they point at."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/tags", params={"repository": repository})
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("tag", "digest", "updated"),
        (
            (
                render.cell(tag["name"]),
                render.cell(tag["digest"]),
                render.ago(tag.get("updated_at")),
            )
            for tag in document["tags"]
        ),
        f"no tags cached in {repository}",
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.add_typer(repos_app, name="repos")
    app.add_typer(images_app, name="images")
    app.add_typer(tags_app, name="tags")
