"""What the operator commands share: the --config option, and the data directory's database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pullthrough.client.cli_options import EXIT_USAGE

if TYPE_CHECKING:  # the database layer loads only for the commands that use it
    from pullthrough.config import Settings
    from pullthrough.metadata.store import MetadataStore

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The server's configuration file (or PULLTHROUGH_CONFIG)."),
]


def settings_or_exit(config: Path | None) -> Settings:
    from pullthrough.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"pullthrough: configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None


def data_dir_or_exit(settings: Settings) -> Path:
    """The data directory the commands work on. A missing one is created only when the user named
    it (`data_dir` in the --config file or PULLTHROUGH_DATA_DIR), so that bootstrapping before the
    first `serve` works; the embedded default `./data` must already exist, else the command would
    make an empty one wherever it runs and report that nothing is in it."""
    data_dir = settings.data_dir.resolve()
    if not data_dir.is_dir() and "data_dir" not in settings.model_fields_set:
        raise fail(
            f"no data directory at {data_dir}: give the server's configuration with --config FILE "
            "(or PULLTHROUGH_CONFIG), whose data_dir names it",
            EXIT_USAGE,
        )
    return data_dir


@asynccontextmanager
async def open_metadata(settings: Settings) -> AsyncIterator[MetadataStore]:
    from pullthrough.metadata.store import MetadataStore, sqlite_url
    from pullthrough.storage.layout import DataLayout

    layout = DataLayout(data_dir_or_exit(settings))
    layout.create()
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        yield metadata
    finally:
        await metadata.close()


def run_on_metadata(
    config: Path | None, work: Callable[[MetadataStore, Settings], Awaitable[T]]
) -> T:
    """Run `work` against the metadata database of the server that `config` describes."""
    settings = settings_or_exit(config)

    async def main() -> T:
        async with open_metadata(settings) as metadata:
            return await work(metadata, settings)

    return asyncio.run(main())


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"pullthrough: {message}", err=True)
    return typer.Exit(code)
