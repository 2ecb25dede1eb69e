"""`pullthrough migrate`: bring the metadata database to this release's schema."""

from __future__ import annotations

import asyncio

import typer

from pullthrough.cli.options import EXIT_USAGE, ConfigOption, fail, settings_or_exit


def migrate(config: ConfigOption = None) -> None:
    """Apply the metadata database's migrations (stop every server using it first)."""
    from pullthrough.metadata.migrating import SchemaMismatch
    from pullthrough.metadata.opening import metadata_for

    settings = settings_or_exit(config)

    async def main() -> tuple[str | None, str]:
        async with metadata_for(settings, migrate=True) as metadata:
            assert metadata.migration is not None
            return metadata.migration.found, metadata.migration.reached

    try:
        found, reached = asyncio.run(main())
    except SchemaMismatch as exc:
        fail(str(exc), EXIT_USAGE)
    if found == reached:
        typer.echo(f"metadata database: at revision {reached}, nothing to migrate")
    else:
        typer.echo(f"metadata database: migrated from {found or 'nothing (new)'} to {reached}")


def register(app: typer.Typer) -> None:
    app.command()(migrate)
