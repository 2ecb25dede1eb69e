"""The `pullthrough` command: the typer app, `serve` and `version`, and every command group
registered onto it when the command runs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from pullthrough import __version__
from pullthrough.cli.options import EXIT_USAGE, fail, fail_configuration
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
    from pullthrough.metadata.migrating import SchemaMismatch
    from pullthrough.server import serve as run_server

    try:
        settings = load_settings(config)
        overrides = {k: v for k, v in (("listen", listen), ("workers", workers)) if v is not None}
        if overrides:
            settings = type(settings).model_validate({**settings.model_dump(), **overrides})
        problem = settings.open_listener_problem()
        if problem is not None:
            raise ConfigError(problem)
        code = run_server(settings)
    except ConfigError as exc:
        fail_configuration(exc)
    except SchemaMismatch as exc:
        # A shared database is migrated by `pullthrough migrate`, never by a starting server.
        fail(str(exc), EXIT_USAGE)
    if code:
        raise typer.Exit(code)


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


def _command_word(argv: list[str]) -> str | None:
    """The command this run names (its first word that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main() -> None:
    _widen_help()
    app.command()(serve)
    if _command_word(sys.argv[1:]) == "serve":
        # The server loads no other command: its worker processes, forked from it, serve
        # with only what serving needs in memory. (Two commands keep `serve` a subcommand.)
        app.command()(version)
        app()
        return
    # The commands live in their own modules, imported here so that `serve` starts lean; the
    # order of registration is the order of `pullthrough --help`.
    from pullthrough.cli import (
        access,
        aws_keys,
        declarative,
        lifecycle,
        migrate,
        mirror,
        prefetch,
        repos,
        rewrite,
        rules,
        scanning,
        secrets,
        status,
        vulndb,
    )

    status.register(app)
    app.command()(version)
    migrate.register(app)
    for module in (
        access,
        aws_keys,
        secrets,
        lifecycle,
        rules,
        repos,
        scanning,
        prefetch,
        rewrite,
        mirror,
        declarative,
        vulndb,
    ):
        module.register(app)
    app()
