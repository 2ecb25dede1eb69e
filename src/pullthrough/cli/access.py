"""Command-line management of who may pull: users, API keys, login tokens, the registry policy.

`users`, `apikeys` and `policy put --config` work on the server's data directory directly (the
same `--config`), on the server's machine: they bootstrap access before anyone can use the admin
API. Each returns once every worker of a running server sees the change (within
`REVISION_POLL_SECONDS`): after `users delete`, the user's credentials and tokens are refused.
`login-password --server` asks a running server for the caller's own login token, as
`aws ecr get-login-password` does; `login-password --config` mints one on the server's machine.
`policy` otherwise goes through the admin API.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pullthrough.cli.options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    ConfigOption,
    ServerOption,
    TokenOption,
    admin_session,
    client_settings,
    error_line,
    fail,
    read_text,
    run_on_metadata,
)

if TYPE_CHECKING:  # the database and crypto layers load only for the commands that use them
    from pullthrough.cli.options import ClientFactory
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
        fail(f"no {what} on standard input", EXIT_USAGE)
    return value


def _refuse_reserved(name: str) -> None:
    from pullthrough.access.authn import LOGIN_TOKEN_USERNAMES

    if name in LOGIN_TOKEN_USERNAMES:
        fail(
            f"{name!r} is the username that goes with a login token; choose another name",
            EXIT_USAGE,
        )


async def _save_principal(
    store: AccessStore, name: str, kind: str, secret_hash: str, org: str | None, groups: list[str]
) -> None:
    from pullthrough.metadata.revisions import propagated

    await store.put_principal(name, kind, secret_hash, org, tuple(groups))
    await propagated()  # a changed password or key: the old one is refused everywhere now


@users_app.command("add")
def users_add(
    name: str, org: OrgOption = None, group: GroupOption = None, config: ConfigOption = None
) -> None:
    """Add a user, or change one (a new password refuses the old one and the tokens issued
    with it); the password is read from standard input."""
    from pullthrough.access.hashing import hash_password

    _refuse_reserved(name)
    password = _read_secret("password")
    hashed = hash_password(password)
    _run(config, lambda store, _s: _save_principal(store, name, "user", hashed, org, group or []))
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
    """Remove a user or API key; returns once a running server refuses its credentials and
    tokens on every worker."""
    _delete_principal(config, name, kinds=("user", "apikey"), what="principal")


def _delete_principal(config: Path | None, name: str, kinds: tuple[str, ...], what: str) -> None:
    async def delete(store: AccessStore, _settings: Settings) -> bool:
        from pullthrough.metadata.revisions import propagated

        row = await store.principal(name)
        if row is None or row.kind not in kinds or not await store.delete_principal(name):
            return False
        await propagated()  # every worker refuses its credentials and tokens now
        return True

    if not _run(config, delete):
        fail(f"no {what} named {name!r}")
    typer.echo(f"{name} deleted")


@apikeys_app.command("create")
def apikeys_create(
    name: str, org: OrgOption = None, group: GroupOption = None, config: ConfigOption = None
) -> None:
    """Create an API key and print it once; log in with the key's name and the key. Creating
    it again replaces the key (the old one is refused)."""
    from pullthrough.access.hashing import hash_api_key, new_api_key

    _refuse_reserved(name)
    key = new_api_key()
    hashed = hash_api_key(key)
    _run(config, lambda store, _s: _save_principal(store, name, "apikey", hashed, org, group or []))
    typer.echo(key)


@apikeys_app.command("delete")
def apikeys_delete(name: str, config: ConfigOption = None) -> None:
    """Remove an API key; returns once a running server refuses it on every worker."""
    _delete_principal(config, name, kinds=("apikey",), what="API key")


def login_password(
    ctx: typer.Context,
    principal: Annotated[
        str | None,
        typer.Option(
            "--principal",
            "--username",
            "-u",
            help="The user or API key to log in as.",
            show_default=False,
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="With --server: read the password or API key from standard input.",
        ),
    ] = False,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="Lifetime, like 12h (default and most: the server's auth.login_token_ttl)."
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Mint the token on the server's machine from its configuration instead "
            "(or PULLTHROUGH_CONFIG).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a short-lived login token: pipe it to `docker login --username token
    --password-stdin <server>` (like `aws ecr get-login-password`).

    With --server (or PULLTHROUGH_SERVER, or the client file), a running server issues it to
    whoever logs in: --principal NAME with the password or API key (prompted, or
    --password-stdin), or --token NAME:API_KEY (or PULLTHROUGH_TOKEN, or the client file).
    With --config it is minted from the server's data directory, for any --principal."""
    if config is not None and server is not None:
        fail(
            "give --server (ask a running server) or --config (its data directory), not both",
            EXIT_USAGE,
        )
    if config is not None or (server is None and os.environ.get("PULLTHROUGH_CONFIG")):
        if principal is None:
            fail(
                "--config needs --principal NAME: the user or API key to mint a token for",
                EXIT_USAGE,
            )
        if password_stdin or token is not None:
            fail(
                "--password-stdin and --token go with --server; --config needs no credentials",
                EXIT_USAGE,
            )
        typer.echo(_mint_locally(config, principal, ttl))
    else:
        typer.echo(_ask_server(ctx, server, token, principal, password_stdin, ttl))


def _mint_locally(config: Path | None, principal: str, ttl: str | None) -> str:
    from pullthrough.access.authn import principal_of
    from pullthrough.access.tokens import TokenSigner, load_or_create_key
    from pullthrough.config import parse_duration

    async def mint(store: AccessStore, settings: Settings) -> str:
        row = await store.principal(principal)
        if row is None:
            fail(f"no principal named {principal!r}")
        signer = TokenSigner(
            load_or_create_key(settings.data_dir.resolve()), service=settings.auth.service
        )
        lifetime = parse_duration(ttl) if ttl else settings.auth.login_token_ttl
        stamp = signer.stamp(row.secret_hash)
        return signer.issue(principal_of(row), lifetime, stamp=stamp, purpose="login")

    return _run(config, mint)


def _ask_server(
    ctx: typer.Context,
    server: str | None,
    token: str | None,
    principal: str | None,
    password_stdin: bool,
    ttl: str | None,
) -> str:
    from pullthrough.client.admin import AdminClient, AdminError

    if principal is not None:
        if password_stdin:
            secret = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            secret = str(typer.prompt(f"password or API key of {principal}", hide_input=True))
        else:
            fail(
                "no terminal to ask for the password: pipe it in with --password-stdin", EXIT_USAGE
            )
        if not secret:
            fail(f"no password or API key for {principal!r} on standard input", EXIT_USAGE)
        credentials = f"{principal}:{secret}"
    else:
        credentials = client_settings(server, token).token or ""
        if password_stdin:
            fail("--password-stdin needs --principal NAME: whose password it is", EXIT_USAGE)
        if ":" not in credentials:
            fail(
                "log in with --principal NAME (the password or API key is prompted for, or read "
                "with --password-stdin), or --token NAME:API_KEY; a login token cannot get another",
                EXIT_USAGE,
            )
        principal = credentials.partition(":")[0]
    settings = client_settings(server, credentials)
    factory: ClientFactory = ctx.obj if callable(ctx.obj) else AdminClient
    client = factory(settings)
    try:
        issued = client.post("/login-token", {} if ttl is None else {"ttl": ttl})
    except AdminError as exc:
        if exc.status == 401:
            fail(
                f"{settings.server} refused the login of {principal!r}: wrong username, "
                "password or API key",
                EXIT_REFUSED,
            )
        fail(error_line(exc), EXIT_REFUSED)
    finally:
        client.close()
    return str(issued["token"])


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
    """Validate and store the registry policy; returns once a running server applies it."""
    from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError

    text = read_text(file, "the policy")
    try:
        document = PolicyDocument.parse(text)
    except PolicyError as exc:
        fail(f"invalid policy: {exc}", EXIT_USAGE)
    if config is not None:

        async def store_policy(store: AccessStore, _settings: Settings) -> None:
            from pullthrough.metadata.revisions import propagated

            await store.put_policy(json.dumps(document.to_json()))
            await propagated()  # every worker of a running server decides by it now

        _run(config, store_policy)
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
