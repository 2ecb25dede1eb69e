"""`pullthrough plan|apply -f pullthrough.yaml`: the server's rules, secrets, templates, registry
policy and scanning configuration made to match a file, like Terraform over the admin API.

Exit codes: 0 done (or nothing to change); 1 the server refused or failed; 2 the file or an
option is wrong; 3 `plan --detailed-exitcode` found changes to make.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pullthrough.cli.options import (
    EXIT_USAGE,
    ServerOption,
    TokenOption,
    admin_session,
    error_line,
    fail,
)
from pullthrough.cli.render import print_json
from pullthrough.client.admin import AdminClient

if TYPE_CHECKING:  # the declarative layer loads when `plan` or `apply` runs
    from pullthrough.declarative.document import Declaration
    from pullthrough.declarative.plan import Plan

EXIT_CHANGES_PENDING = 3


class PlanOutput(StrEnum):
    text = "text"
    json = "json"


FileOption = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help="The declarative file (rules, secrets, templates, registry_policy, scanning).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("plan")(plan)
    app.command("apply")(apply)


def plan(
    ctx: typer.Context,
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    output: Annotated[
        PlanOutput, typer.Option("--output", "-o", help="text for people, json for scripts.")
    ] = PlanOutput.text,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 3 when there are changes to make (0 when none)."
        ),
    ] = False,
) -> None:
    """Show what `apply` would change on the server to make it match FILE; change nothing."""
    from pullthrough.declarative.render import plan_document, render_text

    declaration = _declaration(file)
    with admin_session(ctx, server, token) as client:
        result = _plan(client, declaration)
    if output is PlanOutput.json:
        print_json(plan_document(result, client.settings.server))
    else:
        typer.echo(render_text(result, client.settings.server), nl=False)
    if detailed_exitcode and result.pending:
        raise typer.Exit(EXIT_CHANGES_PENDING)


def apply(
    ctx: typer.Context,
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    auto_approve: Annotated[
        bool,
        typer.Option("--auto-approve", help="Apply without asking (it never asks without a TTY)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show the plan, like `pullthrough plan`.")
    ] = False,
) -> None:
    """Make the server match FILE: show the plan, then carry it out step by step."""
    from pullthrough.declarative.apply import ApplyFailed, apply_plan, describe_all
    from pullthrough.declarative.render import render_text

    declaration = _declaration(file)
    with admin_session(ctx, server, token) as client:
        result = _plan(client, declaration)
        typer.echo(render_text(result, client.settings.server), nl=False)
        if dry_run or not result.pending:
            return
        ask = sys.stdin.isatty() and not auto_approve
        if ask and not typer.confirm("Apply these changes?", default=False):
            fail("apply cancelled: nothing was changed")
        typer.echo("")
        try:
            apply_plan(result, client, on_step=lambda step: typer.echo(f"  {step.done()}"))
        except ApplyFailed as exc:
            fail(
                f"apply stopped: {exc.step.describe()} failed: {error_line(exc.error)}. "
                f"{len(exc.done)} of {exc.total} steps were applied before it "
                f"({describe_all(exc.done)}); nothing after it was tried. Fix the cause and "
                "run apply again: it picks up from what the server has now"
            )
    typer.echo(
        f"\nApply complete: {result.count('create')} added, {result.count('update')} changed, "
        f"{result.count('delete')} destroyed."
    )


def _declaration(file: Path) -> Declaration:
    from pullthrough.declarative.document import DocumentError, load_declaration

    try:
        return load_declaration(file)
    except DocumentError as exc:
        for problem in exc.problems:
            typer.echo(f"pullthrough: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _plan(client: AdminClient, declaration: Declaration) -> Plan:
    # Rules and secrets are read together, so the plan can warn about a rule naming a secret
    # that is missing or about to go, whichever of the two sections the file owns.
    from pullthrough.declarative.plan import compute_plan
    from pullthrough.declarative.state import read_state, server_secret_checks

    sections = set(declaration.sections)
    if sections & {"rules", "secrets"}:
        sections |= {"rules", "secrets"}
    state = read_state(client, sections)
    return compute_plan(declaration, state, server_secret_checks(client))
