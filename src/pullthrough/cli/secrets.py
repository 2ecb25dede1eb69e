"""`pullthrough secrets put|list|delete`: the upstream credentials rules name, through the
admin API. A running server uses a changed secret within a few seconds.

Values are read from stdin or a file, never from arguments (which other users can see in
`ps`), and never printed: the API returns names and timestamps only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_USAGE,
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
    read_text,
)
from pullthrough.client.admin import AdminClient, AdminError, path_segment

if TYPE_CHECKING:
    from pullthrough.upstream.credentials import Credential

NameArgument = Annotated[
    str, typer.Argument(help="The secret's name, e.g. pullthrough/docker-hub.")
]

secrets_app = typer.Typer(
    help="Upstream credentials, stored encrypted by the server (admin API).", no_args_is_help=True
)


def _read_value(name: str, username: str | None, file: Path | None) -> Credential:
    """The credential from `file` or stdin: the token alone with --username, else JSON."""
    from pullthrough.access.secret_values import SecretError, credential_from_json
    from pullthrough.upstream.credentials import Credential

    if file is not None:
        text = read_text(file, "the secret value in")
    elif sys.stdin.isatty():
        if username is not None:
            text = typer.prompt(f"access token for {username}", hide_input=True)
        else:
            typer.echo(
                f'the value of {name}: {{"username": "…", "accessToken": "…"}}, then Ctrl-D',
                err=True,
            )
            text = sys.stdin.read()
    else:
        text = sys.stdin.read()
    try:
        if username is None:
            return credential_from_json(text)
        token = text.rstrip("\r\n")
        if not token:
            fail(f"no access token for {username} on standard input or in the file", EXIT_USAGE)
        return Credential(username, token)
    except SecretError as exc:
        fail(str(exc), EXIT_USAGE)


def _exists(client: AdminClient, name: str) -> bool:
    try:
        client.get(f"/secrets/{path_segment(name)}")
    except AdminError as exc:
        if exc.status == 404:
            return False
        raise
    return True


@secrets_app.command("put")
def put(
    ctx: typer.Context,
    name: NameArgument,
    username: Annotated[
        str | None,
        typer.Option(
            "--username", "-u", help="The upstream username; the token alone comes from stdin."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read the value (or, with --username, the token) from FILE."
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Store a secret: the token from stdin with --username, or JSON {"username": …,
    "accessToken": …} (or "password")."""
    from pullthrough.access.secret_values import SecretError, validate_secret_name

    try:
        validate_secret_name(name)
    except SecretError as exc:
        fail(str(exc), EXIT_USAGE)
    value = _read_value(name, username, file)
    with admin_session(ctx, server, token) as client:
        existed = _exists(client, name)
        client.put(
            f"/secrets/{path_segment(name)}",
            {"username": value.username, "accessToken": value.password},
        )
    if existed:
        typer.echo(f"replaced secret {name}; running servers use it within a few seconds")
    else:
        typer.echo(f"stored secret {name}")


@secrets_app.command("list")
def list_secrets(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Names and timestamps of the stored secrets (never their values)."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/secrets")
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("name", "created", "updated"),
        (
            (
                render.cell(s["name"]),
                render.cell(s.get("created_at")),
                render.ago(s.get("updated_at")),
            )
            for s in document["secrets"]
        ),
        "no secrets stored; add one with `pullthrough secrets put NAME --username USER`",
    )


@secrets_app.command("delete")
def delete(
    ctx: typer.Context, name: NameArgument, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Delete a secret; rules naming it fall back to the environment, else go anonymous."""
    with admin_session(ctx, server, token) as client:
        try:
            client.delete(f"/secrets/{path_segment(name)}")
        except AdminError as exc:
            if exc.status == 404:
                fail(f"no secret named {name!r}")
            raise
    typer.echo(f"deleted secret {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
