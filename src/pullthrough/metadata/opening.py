"""The one place that opens the metadata database from the settings.

By default that is the SQLite file in the data directory; a configured `database_url`
(PostgreSQL, or another SQLite file) is chosen here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url

from pullthrough.config import Settings
from pullthrough.metadata.lease_locks import LeaseLocks
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.storage.layout import DataLayout
from pullthrough.storage.locks import FileLocks, Locks

# The configured scheme, and the asynchronous driver's that SQLAlchemy opens it with.
_DRIVERS = {"postgresql://": "postgresql+asyncpg://", "sqlite:///": "sqlite+aiosqlite:///"}


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the metadata database these settings name."""
    configured = settings.database_url
    if configured is None:
        return sqlite_url(DataLayout(settings.data_dir.resolve()).metadata_file)
    for scheme, driver in _DRIVERS.items():
        if configured.startswith(scheme):
            return driver + configured.removeprefix(scheme)
    raise ValueError(f"database_url {configured!r}: not postgresql:// or sqlite:///")


def describe_database(settings: Settings) -> str:
    """The metadata database for people: the SQLite file, or the URL without its password."""
    if settings.database_url is None:
        return str(DataLayout(settings.data_dir.resolve()).metadata_file)
    return make_url(settings.database_url).render_as_string(hide_password=True)


async def open_metadata(settings: Settings, *, migrate: bool = False) -> MetadataStore:
    """Open the metadata database at this release's schema (migrating.py decides whether that
    migrates it, with `migrate` for a shared database); the caller closes it."""
    DataLayout(settings.data_dir.resolve()).create()
    return await MetadataStore.open(database_url(settings), migrate=migrate)


def open_locks(settings: Settings, metadata: MetadataStore) -> Locks:
    """The lock set of fills, tag refreshes and garbage collection; the caller closes it.

    On PostgreSQL, replicas on other hosts may share the database (and the blob storage), so
    the locks are lease rows in it; on SQLite, every process is on this host: `flock`s on files
    in the data directory's tmp/.
    """
    if metadata.engine.dialect.name == "postgresql":
        return LeaseLocks(metadata.engine, settings.advertised_url)
    return FileLocks(DataLayout(settings.data_dir.resolve()).temp_dir)


@asynccontextmanager
async def metadata_for(
    settings: Settings, *, migrate: bool = False
) -> AsyncIterator[MetadataStore]:
    """The metadata database for the length of a `with` block."""
    metadata = await open_metadata(settings, migrate=migrate)
    try:
        yield metadata
    finally:
        await metadata.close()
