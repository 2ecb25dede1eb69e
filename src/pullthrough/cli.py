"""The `pullthrough` command line."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from pullthrough import __version__
from pullthrough.client.cli_options import (
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
)
from pullthrough.config import ConfigError, load_settings

# Narrower than this, rich cuts long option names and URLs in help tables short ("…"); a
# narrower terminal gets lines this wide and wraps them, losing nothing.
MIN_HELP_WIDTH = 100
# Help sent to a pipe or a file (no terminal to measure): whole lines for grep and less.
PIPED_HELP_WIDTH = 120

app = typer.Typer(
    help="pullthrough: a self-hosted pull-through cache for container images.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML configuration file (or PULLTHROUGH_CONFIG)."),
    ] = None,
    listen: Annotated[
        str | None, typer.Option(help="host:port to listen on (overrides the file).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes sharing the port (default: CPU cores).")
    ] = None,
) -> None:
    """Serve the cache: embedded defaults, overridden by --config and PULLTHROUGH_* variables."""
    from pullthrough.server import serve as run_server

    try:
        settings = load_settings(config)
        overrides = {k: v for k, v in (("listen", listen), ("workers", workers)) if v is not None}
        if overrides:
            settings = type(settings).model_validate({**settings.model_dump(), **overrides})
        code = run_server(settings)
    except ConfigError as exc:
        typer.echo(f"pullthrough: configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


@app.command()
def status(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Each rule's upstream (reachable, last error, rate-limit headroom, 429 block), hit
    statistics, and what the cache holds; warns when an upstream's rate limit runs low."""
    from pullthrough.client import render
    from pullthrough.status import print_status

    with admin_session(ctx, server, token) as client:
        document = client.get("/status")
    if output is Output.json:
        render.print_json(document)
    else:
        print_status(document, render.console())


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _widen_help() -> None:
    """Make help and usage errors at least MIN_HELP_WIDTH wide, unless the user chose a width.

    typer reads TERMINAL_WIDTH when it first renders help, which is after this runs.
    """
    if os.environ.get("TERMINAL_WIDTH"):
        return
    if sys.stdout.isatty():
        width = max(shutil.get_terminal_size().columns, MIN_HELP_WIDTH)
    else:
        width = PIPED_HELP_WIDTH
    os.environ["TERMINAL_WIDTH"] = str(width)


def main() -> None:
    _widen_help()
    # Sub-command groups live in their own modules; imported here so `serve` starts lean.
    from pullthrough import (
        cli_access,
        cli_declarative,
        cli_lifecycle,
        cli_mirror,
        cli_prefetch,
        cli_repos,
        cli_rewrite,
        cli_rules,
        cli_secrets,
    )

    for module in (
        cli_access,
        cli_secrets,
        cli_lifecycle,
        cli_rules,
        cli_repos,
        cli_prefetch,
        cli_rewrite,
        cli_mirror,
        cli_declarative,
    ):
        module.register(app)
    app()
