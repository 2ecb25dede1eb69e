"""`pullthrough access-keys`: AWS access keys for the ECR-compatible API, each mapped to a user
or API key, on the server's data directory (`--config`), like `users` and `apikeys`. Each
command returns once every worker of a running server sees the change."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pullthrough.cli.options import ConfigOption, fail, run_on_metadata

if TYPE_CHECKING:  # the database and crypto layers load only for the commands that use them
    from pullthrough.access.aws_keys import AwsKeys
    from pullthrough.config import Settings

T = TypeVar("T")

access_keys_app = typer.Typer(
    help="AWS access keys for the ECR-compatible API (aws ecr … --endpoint-url), each acting "
    "as a user or API key.",
    no_args_is_help=True,
)


def _run(config: Path | None, work: Callable[[AwsKeys, Settings], Awaitable[T]]) -> T:
    from pullthrough.access.aws_keys import AwsKeys
    from pullthrough.access.sealing import SecretKeySource
    from pullthrough.metadata.revisions import Revisions

    return run_on_metadata(
        config,
        lambda metadata, settings: work(
            AwsKeys(
                metadata.engine,
                SecretKeySource(settings.data_dir.resolve()),
                Revisions(metadata.engine),
            ),
            settings,
        ),
    )


@access_keys_app.command("create")
def access_keys_create(
    user: Annotated[str, typer.Option("--user", "-u", help="The user or API key the key acts as.")],
    config: ConfigOption = None,
) -> None:
    """Create an access key for a principal and print it once, as AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY lines (the secret cannot be shown again)."""
    from pullthrough.access.aws_keys import AwsKeyError
    from pullthrough.metadata.revisions import propagated

    async def create(keys: AwsKeys, _settings: Settings) -> tuple[str, str]:
        try:
            created = await keys.create(user)
        except AwsKeyError as exc:
            fail(str(exc))
        await propagated()
        return created.access_key_id, created.secret_access_key

    key_id, secret = _run(config, create)
    typer.echo(f"AWS_ACCESS_KEY_ID={key_id}")
    typer.echo(f"AWS_SECRET_ACCESS_KEY={secret}")


@access_keys_app.command("list")
def access_keys_list(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this principal's.")] = None,
    config: ConfigOption = None,
) -> None:
    """Access key ids, their principals and when they were created (never their secrets)."""
    records = _run(config, lambda keys, _s: keys.store.all(user))
    for record in records:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created_at))
        typer.echo(f"{record.access_key_id}\t{record.principal}\t{created}")


@access_keys_app.command("delete")
def access_keys_delete(access_key_id: str, config: ConfigOption = None) -> None:
    """Delete an access key; returns once a running server refuses it on every worker."""
    from pullthrough.metadata.revisions import propagated

    async def delete(keys: AwsKeys, _settings: Settings) -> bool:
        deleted = await keys.store.delete(access_key_id)
        if deleted:
            await propagated()
        return deleted

    if not _run(config, delete):
        fail(f"no access key {access_key_id!r}")
    typer.echo(f"{access_key_id} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(access_keys_app, name="access-keys")
