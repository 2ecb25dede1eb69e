"""Command-line management of space: creation templates, lifecycle policies, preview and run.

`templates` go through the admin API (`--server`); `lifecycle` works on the server's data
directory (`--config`), on the server's machine.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pullthrough.cli_support import ConfigOption, fail, run_on_metadata
from pullthrough.client import render
from pullthrough.client.admin import path_segment
from pullthrough.client.cli_options import (
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    read_json_object,
)

if TYPE_CHECKING:  # the database layer loads only for the commands that use it
    from pullthrough.config import Settings
    from pullthrough.lifecycle.policy import Expiry
    from pullthrough.metadata.store import MetadataStore

templates_app = typer.Typer(
    help="Repository creation templates: settings copied onto repositories the cache creates "
    "(admin API).",
    no_args_is_help=True,
)
lifecycle_app = typer.Typer(
    help="Lifecycle policies (ECR's grammar): preview and run expiry, size cap and GC.",
    no_args_is_help=True,
)

NowOption = Annotated[
    str | None,
    typer.Option(help="Evaluate as if it were this time (ISO 8601), to see what will expire."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _policy_text(file: Path) -> str:
    from pullthrough.lifecycle.policy import LifecyclePolicy, LifecyclePolicyError

    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        LifecyclePolicy.parse(text)
    except LifecyclePolicyError as exc:
        raise fail(f"invalid lifecycle policy: {exc}", 2) from None
    return text


def _when(now: str | None) -> float | None:
    if now is None:
        return None
    try:
        return datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise fail(f"--now {now!r} is not an ISO 8601 time", 2) from None


@templates_app.command("put")
def templates_put(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="A repository prefix (e.g. docker-hub) or ROOT.")],
    lifecycle_policy: Annotated[
        Path | None, typer.Option(help="An ECR lifecycle policy JSON file, or - for stdin.")
    ] = None,
    scan_on_pull: Annotated[bool, typer.Option(help="Scan images when first cached.")] = False,
    description: Annotated[str | None, typer.Option()] = None,
    applied_for: Annotated[
        list[str] | None,
        typer.Option(help="Where it applies (repeatable; default PULL_THROUGH_CACHE)."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Create or replace a template; repositories created afterwards get its settings."""
    body: dict[str, Any] = {"prefix": prefix, "scan_on_pull": scan_on_pull}
    if lifecycle_policy is not None:
        body["lifecycle_policy"] = read_json_object(lifecycle_policy, "the lifecycle policy")
    if description is not None:
        body["description"] = description
    if applied_for:
        body["applied_for"] = applied_for
    with admin_session(ctx, server, token) as client:
        client.put(f"/templates/{path_segment(prefix)}", body)
    typer.echo(f"template {prefix} saved (applies to repositories created from now on)")


@templates_app.command("list")
def templates_list(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Every template, with how many lifecycle rules it carries."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/templates")
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("prefix", "applied for", "lifecycle rules", "scan on pull", "description"),
        (
            (
                render.cell(t["prefix"]),
                render.cell(t.get("applied_for")),
                str(len((t.get("lifecycle_policy") or {}).get("rules", []))),
                render.cell(bool(t.get("scan_on_pull"))),
                render.cell(t.get("description")),
            )
            for t in document["templates"]
        ),
        "no templates: add one with `pullthrough templates put ROOT --lifecycle-policy FILE`",
    )


@templates_app.command("get")
def templates_get(
    ctx: typer.Context,
    prefix: str,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """One template, with its lifecycle policy."""
    with admin_session(ctx, server, token) as client:
        template = client.get(f"/templates/{path_segment(prefix)}")
    if output is Output.json:
        render.print_json(template)
        return
    policy = template.get("lifecycle_policy")
    render.print_fields(
        [
            ("prefix", render.cell(template["prefix"])),
            ("applied for", render.cell(template.get("applied_for"))),
            ("scan on pull", render.cell(bool(template.get("scan_on_pull")))),
            ("description", render.cell(template.get("description"))),
            ("created", render.cell(template.get("created_at"))),
            ("updated", render.cell(template.get("updated_at"))),
            ("lifecycle policy", render.cell(json.dumps(policy, indent=2) if policy else None)),
        ]
    )


@templates_app.command("delete")
def templates_delete(
    ctx: typer.Context, prefix: str, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Remove a template (repositories already created keep their settings)."""
    with admin_session(ctx, server, token) as client:
        client.delete(f"/templates/{path_segment(prefix)}")
    typer.echo(f"template {prefix} deleted")


@lifecycle_app.command("policy")
def lifecycle_policy(
    repository: Annotated[
        str, typer.Argument(help="A cached repository, e.g. docker-hub/library/nginx.")
    ],
    set_file: Annotated[
        Path | None, typer.Option("--set", help="Give it this policy (JSON file, or - for stdin).")
    ] = None,
    clear: Annotated[bool, typer.Option(help="Remove the repository's policy.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show a repository's lifecycle policy and the template it came from, or change it."""
    from pullthrough.metadata.templates import TemplateStore

    if set_file is not None or clear:
        policy = None if clear else _policy_text(set_file)  # type: ignore[arg-type]
        if not run_on_metadata(
            config, lambda m, _s: TemplateStore(m.engine).set_lifecycle_policy(repository, policy)
        ):
            raise fail(f"no cached repository {repository!r}")
        typer.echo(f"lifecycle policy of {repository} {'removed' if clear else 'saved'}")
        return
    settings = run_on_metadata(config, lambda m, _s: TemplateStore(m.engine).settings(repository))
    document: dict[str, Any] = {
        "repository": repository,
        "template": settings.template_prefix if settings else None,
        "scanOnPull": settings.scan_on_pull if settings else False,
        "lifecyclePolicy": (
            json.loads(settings.lifecycle_policy)
            if settings and settings.lifecycle_policy
            else None
        ),
    }
    typer.echo(json.dumps(document, indent=2))


def _expiry_json(expiry: Expiry) -> dict[str, Any]:
    image = expiry.image
    return {
        "repository": image.repository,
        "digest": image.digest,
        "tags": list(image.tags),
        "rulePriority": expiry.rule_priority,
        "reason": expiry.reason,
    }


async def _keeper_call(
    metadata: MetadataStore,
    settings: Settings,
    action: str,
    repository: str | None,
    now: float | None,
) -> Any:
    from pullthrough.lifecycle.keeper import SpaceKeeper
    from pullthrough.storage.filesystem import FilesystemDriver
    from pullthrough.storage.layout import DataLayout

    layout = DataLayout(settings.data_dir.resolve())
    keeper = SpaceKeeper(
        metadata.engine,
        FilesystemDriver(layout.blob_root),
        settings.lifecycle,
        spool_dir=layout.temp_dir,
    )
    if action == "preview":
        return await keeper.preview(repository, now)
    return await keeper.run(repository, now)


@lifecycle_app.command("preview")
def lifecycle_preview(
    repository: Annotated[str | None, typer.Argument(help="Only this repository.")] = None,
    now: NowOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List what the lifecycle policies would expire, and which rule says so. Changes nothing."""
    when = _when(now)
    expiries, broken = run_on_metadata(
        config, lambda m, s: _keeper_call(m, s, "preview", repository, when)
    )
    if as_json:
        typer.echo(json.dumps([_expiry_json(e) for e in expiries], indent=2))
    else:
        for expiry in expiries:
            image = expiry.image
            tags = ",".join(image.tags) or "<untagged>"
            typer.echo(
                f"{image.repository}@{image.digest}\t{tags}\trule {expiry.rule_priority}"
                f"\t{expiry.reason}"
            )
        typer.echo(f"{len(expiries)} image(s) would expire")
    for name in broken:
        typer.echo(f"pullthrough: {name} has an invalid lifecycle policy; skipped", err=True)


@lifecycle_app.command("run")
def lifecycle_run(
    repository: Annotated[str | None, typer.Argument(help="Only this repository.")] = None,
    now: NowOption = None,
    config: ConfigOption = None,
) -> None:
    """Expire what the policies say, enforce lifecycle.max_size, and collect garbage."""
    started = time.monotonic()
    when = _when(now)
    report = run_on_metadata(config, lambda m, s: _keeper_call(m, s, "run", repository, when))
    for expiry in report.expired:
        typer.echo(
            f"expired {expiry.image.repository}@{expiry.image.digest} (rule {expiry.rule_priority})"
        )
    if report.size_cap is not None:
        typer.echo(f"size cap: {report.size_cap}")
    if report.gc is not None:
        typer.echo(f"garbage collection: {report.gc}")
    typer.echo(f"done in {time.monotonic() - started:.1f}s")


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")
    app.add_typer(lifecycle_app, name="lifecycle")
