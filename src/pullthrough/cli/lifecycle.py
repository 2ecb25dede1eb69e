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

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_USAGE,
    ConfigOption,
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
    read_json_object,
    run_on_metadata,
)
from pullthrough.client.admin import path_segment

if TYPE_CHECKING:  # the database layer loads only for the commands that use it
    from pullthrough.config import Settings
    from pullthrough.lifecycle.gc import GcReport
    from pullthrough.lifecycle.keeper import LifecycleReport
    from pullthrough.lifecycle.lifecycle_policy import Expiry
    from pullthrough.lifecycle.sizecap import SizeCapReport
    from pullthrough.metadata.images import CachedImage
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
ReportOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people; json for scripts.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="The same as --output json.", hidden=True)]


def _policy_text(file: Path) -> str:
    from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicy, LifecyclePolicyError

    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        LifecyclePolicy.parse(text)
    except LifecyclePolicyError as exc:
        fail(f"invalid lifecycle policy: {exc}", EXIT_USAGE)
    return text


def _when(now: str | None) -> float | None:
    if now is None:
        return None
    try:
        return datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    except ValueError:
        fail(f"--now {now!r} is not an ISO 8601 time", EXIT_USAGE)


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
            fail(f"no cached repository {repository!r}")
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
    from pullthrough.access.secrets import secret_store
    from pullthrough.lifecycle.keeper import SpaceKeeper
    from pullthrough.metadata.opening import open_locks
    from pullthrough.storage.opening import open_blob_storage

    # The servers' own lock set: a run waits for theirs, and never deletes a blob being filled.
    locks = open_locks(settings, metadata)
    driver = await open_blob_storage(settings, secret_store(metadata, settings))
    keeper = SpaceKeeper(metadata.engine, driver, settings.lifecycle, locks)
    try:
        if action == "preview":
            return await keeper.preview(repository, now)
        from pullthrough.metadata.revisions import propagated

        report = await keeper.run(repository, now)
    finally:
        await locks.close()
        await driver.close()
    await propagated()  # every worker of a running server has forgotten what was removed
    return report


@lifecycle_app.command("preview")
def lifecycle_preview(
    repository: Annotated[str | None, typer.Argument(help="Only this repository.")] = None,
    now: NowOption = None,
    output: ReportOption = Output.table,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List what the lifecycle policies would expire, and which rule says so. Changes nothing."""
    when = _when(now)
    expiries, broken = run_on_metadata(
        config, lambda m, s: _keeper_call(m, s, "preview", repository, when)
    )
    if as_json or output is Output.json:
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
    output: ReportOption = Output.table,
    config: ConfigOption = None,
) -> None:
    """Expire what the policies say, enforce lifecycle.max_size, and collect garbage; returns
    once every worker of a running server has stopped serving what was removed."""
    started = time.monotonic()
    when = _when(now)
    report: LifecycleReport = run_on_metadata(
        config, lambda m, s: _keeper_call(m, s, "run", repository, when)
    )
    if output is Output.json:
        render.print_json(_run_json(report))
    else:
        _print_run(report, time.monotonic() - started)
    for name in report.skipped:
        typer.echo(f"pullthrough: {name} has an invalid lifecycle policy; skipped", err=True)


def _print_run(report: LifecycleReport, seconds: float) -> None:
    """What a run did, for a person: images expired per repository, then space freed."""
    out = render.console()
    grouped = report.expired_by_repository()
    if grouped:
        table = render.table("repository", "images", "tags", title="Expired by lifecycle policy")
        for name, expiries in grouped.items():
            tags = sorted(tag for expiry in expiries for tag in expiry.image.tags)
            table.add_row(render.cell(name), str(len(expiries)), render.cell(tags))
        out.print(table)
    else:
        out.print("No image expired by lifecycle policy.")
    cap = report.size_cap
    if cap is None:
        out.print("Size cap: none (lifecycle.max_size is not set).")
    elif not cap.evicted:
        out.print(f"Size cap: {render.size(cap.bytes_before)} stored, within {_cap(cap)}.")
    else:
        out.print(
            f"Size cap: evicted {_count(len(cap.evicted), 'image')} (least recently pulled first), "
            f"{render.size(cap.bytes_before)} → {render.size(cap.bytes_after)} ({_cap(cap)})."
        )
        table = render.table("repository", "images", "tags", title="Evicted by the size cap")
        for name, images in _by_repository(cap.evicted).items():
            tags = sorted(tag for image in images for tag in image.tags)
            table.add_row(render.cell(name), str(len(images)), render.cell(tags))
        out.print(table)
    dropped = [name for gc in report.collections for name in gc.repositories_dropped]
    if dropped:
        dropped_count = _count(len(dropped), "repository", "repositories")
        out.print(f"Dropped {dropped_count} of deleted rules: {render.cell(dropped)}.")
    out.print(
        f"Garbage collection: {_count(report.blobs_deleted, 'blob')} deleted, "
        f"{render.size(report.bytes_freed)} freed."
    )
    out.print(f"Done in {seconds:.1f}s.")


def _count(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _cap(cap: SizeCapReport) -> str:
    return f"cap {render.size(cap.max_size)}, low water {render.size(cap.low_water_bytes)}"


def _by_repository(images: tuple[CachedImage, ...]) -> dict[str, list[CachedImage]]:
    grouped: dict[str, list[CachedImage]] = {}
    for image in sorted(images, key=lambda i: (i.repository, i.digest)):
        grouped.setdefault(image.repository, []).append(image)
    return grouped


def _image_json(image: CachedImage) -> dict[str, Any]:
    return {"repository": image.repository, "digest": image.digest, "tags": list(image.tags)}


def _gc_json(gc: GcReport) -> dict[str, Any]:
    return {
        "repositoriesDropped": list(gc.repositories_dropped),
        "blobsDeleted": gc.blobs_deleted,
        "orphanFilesDeleted": gc.orphan_files_deleted,
        "bytesFreed": gc.bytes_freed,
        "refetchedMeanwhile": gc.refilled,
    }


def _run_json(report: LifecycleReport) -> dict[str, Any]:
    """What `lifecycle run --output json` prints (the keys of `lifecycle preview`'s style)."""
    cap = report.size_cap
    return {
        "expired": [_expiry_json(e) for e in report.expired],
        "expiredByRepository": {
            name: len(expiries) for name, expiries in report.expired_by_repository().items()
        },
        "sizeCap": None
        if cap is None
        else {
            "maxSize": cap.max_size,
            "lowWaterBytes": cap.low_water_bytes,
            "bytesBefore": cap.bytes_before,
            "bytesAfter": cap.bytes_after,
            "evicted": [_image_json(image) for image in cap.evicted],
        },
        "garbageCollections": [_gc_json(gc) for gc in report.collections],
        "blobsDeleted": report.blobs_deleted,
        "bytesFreed": report.bytes_freed,
        "skipped": list(report.skipped),
    }


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")
    app.add_typer(lifecycle_app, name="lifecycle")
