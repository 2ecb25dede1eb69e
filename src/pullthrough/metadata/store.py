"""The metadata database: the engine, opened at the schema this release knows (`migrating.py`),
this process's view of the revision counters, and the stores of each concept over them
(`metadata.manifests`, `metadata.blobs`, …). The queries themselves live in the concept modules
of this package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pullthrough.metadata.blob_records import BlobRecordStore
from pullthrough.metadata.manifests import ManifestStore
from pullthrough.metadata.migrating import Migration, bring_to_head

# Re-exported for callers being restructured; removed once they import it from manifests.
from pullthrough.metadata.repositories import RepositoryStore
from pullthrough.metadata.revisions import Revisions
from pullthrough.metadata.secret_rows import SecretRowStore
from pullthrough.metadata.upstream_state import UpstreamStateStore


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite database file `path`."""
    return f"sqlite+aiosqlite:///{path}"


class MetadataStore:
    """SQLite by default; PostgreSQL through the same queries."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # What opening did to the schema; None when the engine was handed in already migrated.
        self.migration: Migration | None = None
        # This process's view of the revision counters, shared by what it remembers of the
        # metadata (repository ids, the manifest memo) so that it is read once per bound.
        self.revisions = Revisions(engine)
        self.repositories = RepositoryStore(engine, self.revisions)
        self.manifests = ManifestStore(engine)
        self.blobs = BlobRecordStore(engine)
        self.upstreams = UpstreamStateStore(engine)
        self.secrets = SecretRowStore(engine)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False) -> MetadataStore:
        """Open the database at `url`, brought to this release's schema: SQLite migrates itself,
        another database only when `migrate` says so (migrating.SchemaMismatch otherwise)."""
        engine = create_async_engine(url)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                # WAL lets worker processes read while one writes; the busy timeout makes
                # concurrent writers wait instead of failing.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

        try:
            migration = await bring_to_head(engine, migrate=migrate)
        except BaseException:
            await engine.dispose()
            raise
        store = cls(engine)
        store.migration = migration
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
