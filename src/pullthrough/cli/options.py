"""What the commands share: the admin API's `--server`, `--token`, `--output` and one
connection per command; the operator commands' `--config` and the data directory's database; and
how a command fails: `fail()` prints one line on stderr and exits with a code (a configuration's
problems, one per line, go through `fail_configuration()`).

Exit codes: 0 ok; 1 the server refused or failed; 2 a usage or configuration error (a bad
option, an unreadable file, a broken client or server configuration file, no data directory).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeAlias, TypeVar

import typer

if TYPE_CHECKING:  # the client (httpx) and the database load when a command uses them
    from pullthrough.client.admin import AdminClient, AdminError, ClientSettings
    from pullthrough.config import ConfigError, Settings
    from pullthrough.metadata.store import MetadataStore

    # Tests pass another factory as the typer context's `obj` (a client over MockTransport).
    ClientFactory: TypeAlias = Callable[[ClientSettings], AdminClient]

T = TypeVar("T")

EXIT_REFUSED = 1
EXIT_USAGE = 2


class Output(StrEnum):
    table = "table"
    json = "json"


ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        help="The server's URL, e.g. http://127.0.0.1:5000 "
        "(or PULLTHROUGH_SERVER, or the client file's server:).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        "-t",
        help="NAME:API_KEY or a login token (or PULLTHROUGH_TOKEN, or the client file's token:).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option("--output", "-o", help="table for people; json prints the API's answer."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The server's configuration file (or PULLTHROUGH_CONFIG)."),
]


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print `pullthrough: <message>` (one line) to stderr and exit with `code`."""
    typer.echo(f"pullthrough: {one_line(message)}", err=True)
    raise typer.Exit(code)


def fail_configuration(error: ConfigError) -> NoReturn:
    """Print the configuration's problems (one per line, each naming its key) and exit 2."""
    typer.echo(f"pullthrough: configuration error:\n{error}", err=True)
    raise typer.Exit(EXIT_USAGE)


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_line(error: AdminError) -> str:
    """The server's message, with the fields it names when the message does not."""
    message = error.message
    details = []
    for field in error.fields:
        if not isinstance(field, dict):
            continue
        name, text = str(field.get("field", "")), str(field.get("message", ""))
        if text and text not in message:
            details.append(f"{name}: {text}" if name else text)
    if details:
        message = f"{message} ({'; '.join(details)})"
    return one_line(message)


def client_settings(server: str | None, token: str | None) -> ClientSettings:
    from pullthrough.client.admin import AdminError, load_client_settings

    try:
        return load_client_settings(server, token)
    except AdminError as exc:
        fail(exc.message, EXIT_USAGE)


@contextmanager
def admin_session(
    ctx: typer.Context, server: str | None, token: str | None
) -> Iterator[AdminClient]:
    """An open client for one command; an AdminError inside becomes exit 1 with its line."""
    from pullthrough.client.admin import AdminClient, AdminError

    settings = client_settings(server, token)
    factory: ClientFactory = ctx.obj if callable(ctx.obj) else AdminClient
    client = factory(settings)
    try:
        yield client
    except AdminError as exc:
        fail(error_line(exc), EXIT_REFUSED)
    finally:
        client.close()


def read_text(path: Path, what: str) -> str:
    """A file's text, or stdin's for `-`; exit 2 when it cannot be read."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE)


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file (or `-`); exit 2 when it is not one."""
    text = read_text(path, what)
    try:
        document = json.loads(text)
    except ValueError as exc:
        fail(f"{what} {path} is not JSON: {exc}", EXIT_USAGE)
    if not isinstance(document, dict):
        fail(f"{what} {path} must be a JSON object", EXIT_USAGE)
    return document


def settings_or_exit(config: Path | None) -> Settings:
    """The server's settings from `config` (or PULLTHROUGH_CONFIG); exit 2 when they are invalid."""
    from pullthrough.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        fail_configuration(exc)


def data_dir_or_exit(settings: Settings) -> Path:
    """The data directory the commands work on. A missing one is created only when the user named
    it (`data_dir` in the --config file or PULLTHROUGH_DATA_DIR), so that bootstrapping before the
    first `serve` works; the embedded default `./data` must already exist, else the command would
    make an empty one wherever it runs and report that nothing is in it."""
    data_dir = settings.data_dir.resolve()
    if not data_dir.is_dir() and "data_dir" not in settings.model_fields_set:
        fail(
            f"no data directory at {data_dir}: give the server's configuration with --config FILE "
            "(or PULLTHROUGH_CONFIG), whose data_dir names it",
            EXIT_USAGE,
        )
    return data_dir


def run_on_metadata(
    config: Path | None, work: Callable[[MetadataStore, Settings], Awaitable[T]]
) -> T:
    """Run `work` against the metadata database of the server that `config` describes; exit 2
    when that database's schema is not this release's (the message says what to do)."""
    from pullthrough.metadata.migrating import SchemaMismatch
    from pullthrough.metadata.opening import metadata_for

    settings = settings_or_exit(config)
    data_dir_or_exit(settings)

    async def main() -> T:
        async with metadata_for(settings) as metadata:
            return await work(metadata, settings)

    try:
        return asyncio.run(main())
    except SchemaMismatch as exc:
        fail(str(exc), EXIT_USAGE)
