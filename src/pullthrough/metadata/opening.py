"""The one place that opens the metadata database from the settings.

Today that is the SQLite file in the data directory; a configured database URL (PostgreSQL) is
chosen here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pullthrough.config import Settings
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.storage.layout import DataLayout


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the metadata database these settings name."""
    return sqlite_url(DataLayout(settings.data_dir.resolve()).metadata_file)


async def open_metadata(settings: Settings) -> MetadataStore:
    """Open (and create the schema of) the metadata database; the caller closes it."""
    DataLayout(settings.data_dir.resolve()).create()
    return await MetadataStore.open(database_url(settings))


@asynccontextmanager
async def metadata_for(settings: Settings) -> AsyncIterator[MetadataStore]:
    """The metadata database for the length of a `with` block."""
    metadata = await open_metadata(settings)
    try:
        yield metadata
    finally:
        await metadata.close()
