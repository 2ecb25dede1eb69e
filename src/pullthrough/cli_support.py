"""What the operator commands share: the --config option, and the data directory's database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

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


@asynccontextmanager
async def open_metadata(settings: Settings) -> AsyncIterator[MetadataStore]:
    from pullthrough.metadata.store import MetadataStore, sqlite_url
    from pullthrough.storage.layout import DataLayout

    layout = DataLayout(settings.data_dir.resolve())
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
