"""Command-line management of who may pull: users, API keys, login tokens, the registry policy.

`users`, `apikeys` and `login-password` work on the server's data directory directly (the same
`--config`), on the server's machine: they bootstrap access before anyone can use the admin API.
`policy` goes through the admin API; `policy put --config` writes the data directory instead,
for the first policy that grants someone `registry:Admin`. Changes take effect in a running
server within a second.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pullthrough.cli_support import ConfigOption, run_on_metadata
from pullthrough.client.cli_options import (
    EXIT_USAGE,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
    read_text,
)

if TYPE_CHECKING:  # the database and crypto layers load only for the commands that use them
    from pullthrough.config import Settings
    from pullthrough.metadata.principals import AccessStore

T = TypeVar("T")
OrgOption = Annotated[str | None, typer.Option(help="The principal's organisation.")]
GroupOption = Annotated[
    list[str] | None, typer.Option("--group", "-g", help="A group (repeat for several).")
]

users_app = typer.Typer(help="Users who log in with a password.", no_args_is_help=True)
apikeys_app = typer.Typer(help="API keys for machines (CI, nodes).", no_args_is_help=True)
policy_app = typer.Typer(
    help="The registry policy (IAM-style JSON), through the admin API.", no_args_is_help=True
)


def _run(config: Path | None, work: Callable[[AccessStore, Settings], Awaitable[T]]) -> T:
    from pullthrough.metadata.principals import AccessStore

    return run_on_metadata(
        config, lambda metadata, settings: work(AccessStore(metadata.engine), settings)
    )


def _read_secret(what: str) -> str:
    if sys.stdin.isatty():
        return str(typer.prompt(what, hide_input=True, confirmation_prompt=True))
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        typer.echo(f"pullthrough: no {what} on standard input", err=True)
        raise typer.Exit(2)
    return value


@users_app.command("add")
def users_add(
    name: str, org: OrgOption = None, group: GroupOption = None, config: ConfigOption = None
) -> None:
    """Add a user, or change one; the password is read from standard input."""
    from pullthrough.access.hashing import hash_password

    password = _read_secret("password")
    hashed = hash_password(password)
    _run(
        config, lambda store, _s: store.put_principal(name, "user", hashed, org, tuple(group or ()))
    )
    typer.echo(f"user {name} saved")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """Users and API keys (never their secrets)."""
    rows = _run(config, lambda store, _s: store.principals())
    for row in rows:
        groups = ",".join(row.groups) or "-"
        typer.echo(f"{row.name}\t{row.kind}\torg={row.org or '-'}\tgroups={groups}")


@users_app.command("delete")
def users_delete(name: str, config: ConfigOption = None) -> None:
    """Remove a user or API key."""
    if not _run(config, lambda store, _s: store.delete_principal(name)):
        typer.echo(f"pullthrough: no principal named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name} deleted")


@apikeys_app.command("create")
def apikeys_create(
    name: str, org: OrgOption = None, group: GroupOption = None, config: ConfigOption = None
) -> None:
    """Create an API key and print it once; log in with the key's name and the key."""
    from pullthrough.access.hashing import hash_api_key, new_api_key

    key = new_api_key()
    _run(
        config,
        lambda store, _s: store.put_principal(
            name, "apikey", hash_api_key(key), org, tuple(group or ())
        ),
    )
    typer.echo(key)


def login_password(
    principal: Annotated[str, typer.Option(help="The user or API key to log in as.")],
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime, like 12h (default: auth.login_token_ttl).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print a short-lived login token: pipe it to `docker login --username token
    --password-stdin <server>` (like `aws ecr get-login-password`)."""
    from pullthrough.access.authn import principal_of
    from pullthrough.access.tokens import TokenSigner, load_or_create_key
    from pullthrough.config import parse_duration

    async def mint(store: AccessStore, settings: Settings) -> str:
        row = await store.principal(principal)
        if row is None:
            typer.echo(f"pullthrough: no principal named {principal!r}", err=True)
            raise typer.Exit(1)
        signer = TokenSigner(
            load_or_create_key(settings.data_dir.resolve()), service=settings.auth.service
        )
        lifetime = parse_duration(ttl) if ttl else settings.auth.login_token_ttl
        who = principal_of(row)
        return signer.issue(who, lifetime, purpose="login")

    typer.echo(_run(config, mint))


@policy_app.command("get")
def policy_get(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Read the data directory of this server configuration instead."
        ),
    ] = None,
) -> None:
    """Print the registry policy document (the built-in default when none is set)."""
    if config is not None:
        stored = _run(config, lambda store, _s: store.policy())
        document = json.loads(stored[0]) if stored else None
    else:
        with admin_session(ctx, server, token) as client:
            document = client.get("/registry-policy")["policy"]
    if document is None:
        from pullthrough.access.authz import DEFAULT_POLICY

        typer.echo("pullthrough: no policy set; the built-in default applies:", err=True)
        document = DEFAULT_POLICY
    typer.echo(json.dumps(document, indent=2))


@policy_app.command("put")
def policy_put(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Option("--file", "-f", help="A JSON policy document, or - for stdin.")
    ],
    server: ServerOption = None,
    token: TokenOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Write to the data directory of this server configuration instead: the "
            "bootstrap, before any principal may use the admin API.",
        ),
    ] = None,
) -> None:
    """Validate and store the registry policy; a running server applies it within a second."""
    from pullthrough.access.policy import PolicyDocument, PolicyError

    text = read_text(file, "the policy")
    try:
        document = PolicyDocument.parse(text)
    except PolicyError as exc:
        fail(f"invalid policy: {exc}", EXIT_USAGE)
    if config is not None:
        _run(config, lambda store, _s: store.put_policy(json.dumps(document.to_json())))
    else:
        with admin_session(ctx, server, token) as client:
            client.put("/registry-policy", json.loads(text))
    typer.echo("policy saved")


@policy_app.command("delete")
def policy_delete(
    ctx: typer.Context, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Remove the registry policy: the built-in default applies again."""
    with admin_session(ctx, server, token) as client:
        client.delete("/registry-policy")
    typer.echo("policy deleted; the built-in default applies")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(apikeys_app, name="apikeys")
    app.add_typer(policy_app, name="policy")
    app.command("login-password")(login_password)
