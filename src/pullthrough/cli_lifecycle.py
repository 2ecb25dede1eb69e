"""Command-line management of space: creation templates, lifecycle policies, preview and run."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pullthrough.cli_support import ConfigOption, fail, run_on_metadata
from pullthrough.config import Settings
from pullthrough.lifecycle.policy import Expiry, LifecyclePolicy, LifecyclePolicyError
from pullthrough.metadata.store import MetadataStore
from pullthrough.metadata.templates import CreationTemplate, TemplateStore

templates_app = typer.Typer(
    help="Repository creation templates: settings copied onto repositories the cache creates.",
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
    prefix: Annotated[str, typer.Argument(help="A repository prefix (e.g. docker-hub) or ROOT.")],
    lifecycle_policy: Annotated[
        Path | None, typer.Option(help="An ECR lifecycle policy JSON file, or - for stdin.")
    ] = None,
    scan_on_pull: Annotated[bool, typer.Option(help="Scan images when first cached.")] = False,
    description: Annotated[str | None, typer.Option()] = None,
    config: ConfigOption = None,
) -> None:
    """Create or replace a template; repositories created afterwards get its settings."""
    policy = _policy_text(lifecycle_policy) if lifecycle_policy else None
    template = CreationTemplate(
        prefix=prefix, lifecycle_policy=policy, scan_on_pull=scan_on_pull, description=description
    )
    run_on_metadata(config, lambda m, _s: TemplateStore(m.engine).put(template))
    typer.echo(f"template {prefix} saved (applies to repositories created from now on)")


@templates_app.command("list")
def templates_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Every template, with its lifecycle policy."""
    templates = run_on_metadata(config, lambda m, _s: TemplateStore(m.engine).all())
    documents = [
        {
            "prefix": t.prefix,
            "appliedFor": list(t.applied_for),
            "scanOnPull": t.scan_on_pull,
            "description": t.description,
            "lifecyclePolicy": json.loads(t.lifecycle_policy) if t.lifecycle_policy else None,
        }
        for t in templates
    ]
    if as_json:
        typer.echo(json.dumps(documents, indent=2))
        return
    for t in templates:
        rules = len(json.loads(t.lifecycle_policy)["rules"]) if t.lifecycle_policy else 0
        typer.echo(
            f"{t.prefix}\tlifecycle rules={rules}\tscan_on_pull={t.scan_on_pull}"
            + (f"\t{t.description}" if t.description else "")
        )


@templates_app.command("delete")
def templates_delete(prefix: str, config: ConfigOption = None) -> None:
    """Remove a template (repositories already created keep their settings)."""
    if not run_on_metadata(config, lambda m, _s: TemplateStore(m.engine).delete(prefix)):
        raise fail(f"no template for prefix {prefix!r}")
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
