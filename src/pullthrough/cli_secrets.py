"""`pullthrough secrets put|list|delete`: the upstream credentials rules name.

These work on the server's data directory directly (the same `--config`), with the key from
`PULLTHROUGH_SECRET_KEY` or the data directory's `secret.key`; a running server uses a changed
secret within a few seconds. Values are read from stdin, never from arguments (which other
users can see in `ps`), and never printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from pullthrough.access.secrets import (
    SecretError,
    SecretStore,
    credential_from_json,
    open_secret_store,
    validate_secret_name,
)
from pullthrough.cli_support import ConfigOption, settings_or_exit
from pullthrough.metadata.store import sqlite_url
from pullthrough.storage.layout import DataLayout
from pullthrough.upstream.credentials import Credential

T = TypeVar("T")
NameArgument = Annotated[
    str, typer.Argument(help="The secret's name, e.g. pullthrough/docker-hub.")
]

secrets_app = typer.Typer(
    help="Upstream credentials, encrypted in the data directory's database.", no_args_is_help=True
)


def _run(config: Path | None, action: Callable[[SecretStore], Awaitable[T]]) -> T:
    settings = settings_or_exit(config)

    async def run() -> T:
        layout = DataLayout(settings.data_dir.resolve())
        layout.create()
        async with open_secret_store(layout.root, sqlite_url(layout.metadata_file)) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except SecretError as exc:
        typer.echo(f"pullthrough: {exc}", err=True)
        raise typer.Exit(1) from None


def _read_value(name: str, username: str | None) -> Credential:
    interactive = sys.stdin.isatty()
    if username is not None:
        if interactive:
            token = typer.prompt(f"access token for {username}", hide_input=True)
        else:
            token = sys.stdin.read().rstrip("\r\n")
        return credential_from_json(json.dumps({"username": username, "accessToken": token}))
    if interactive:
        typer.echo(
            f'the value of {name}: {{"username": "…", "accessToken": "…"}}, then Ctrl-D',
            err=True,
        )
    return credential_from_json(sys.stdin.read())


@secrets_app.command("put")
def put(
    name: NameArgument,
    username: Annotated[
        str | None,
        typer.Option(
            "--username", "-u", help="Take the username from here and only the token from stdin."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Store a secret from stdin: JSON {"username": …, "accessToken": …} (or "password")."""
    try:
        validate_secret_name(name)
        value = _read_value(name, username)
    except SecretError as exc:
        typer.echo(f"pullthrough: {exc}", err=True)
        raise typer.Exit(1) from None
    created = _run(config, lambda store: store.put(name, value))
    if created:
        typer.echo(f"stored secret {name}")
    else:
        typer.echo(f"replaced secret {name}; running servers use it within a few seconds")


@secrets_app.command("list")
def list_secrets(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Names and timestamps of the stored secrets (never their values)."""
    listing = _run(config, lambda store: store.list())
    if as_json:
        document = [
            {
                "name": entry.name,
                "created_at": _iso(entry.created_at),
                "updated_at": _iso(entry.updated_at),
            }
            for entry in listing
        ]
        typer.echo(json.dumps(document, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "created", "updated", box=None)
    for entry in listing:
        table.add_row(entry.name, _iso(entry.created_at), _iso(entry.updated_at))
    console = Console()
    if listing:
        console.print(table)
    else:
        console.print("no secrets stored; add one with `pullthrough secrets put NAME`")


@secrets_app.command("delete")
def delete(name: NameArgument, config: ConfigOption = None) -> None:
    """Delete a secret; rules naming it fall back to the environment, else go anonymous."""
    if not _run(config, lambda store: store.delete(name)):
        typer.echo(f"pullthrough: no secret named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted secret {name}")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
