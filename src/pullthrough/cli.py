"""The `pullthrough` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pullthrough import __version__
from pullthrough.config import ConfigError, load_settings

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
        run_server(settings)
    except ConfigError as exc:
        typer.echo(f"pullthrough: configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def status(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="The server's configuration file (or PULLTHROUGH_CONFIG)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show each rule's upstream rate limit and 429 block, and what the cache holds."""
    import asyncio
    import json

    from rich.console import Console

    from pullthrough.status import NoCacheData, print_status, read_status, status_document

    try:
        settings = load_settings(config)
        current = asyncio.run(read_status(settings))
    except ConfigError as exc:
        typer.echo(f"pullthrough: configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
    except NoCacheData as exc:
        typer.echo(f"pullthrough: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(status_document(current), indent=2))
    else:
        print_status(current, Console())


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
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
