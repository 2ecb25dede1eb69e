"""Bringing a metadata database to the schema this release knows.

The schema's revisions are Alembic's (`migrations/`). Opening a database decides here:

- a new, empty database is created at the head revision when it is SQLite or when migrating was
  asked for;
- a database made before migrations existed (tables, no `alembic_version`) is stamped as the
  baseline, keeping every row, and then treated like any database at that revision;
- a database behind the head is upgraded when it is SQLite (the embedded default migrates
  itself) or when migrating was asked for (`pullthrough migrate`); any other is refused, since
  other processes may share it: a shared database's schema changes only when an operator says;
- a database at a revision this release does not know was made by a newer release: refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision of the schema as it was before migrations existed.
BASELINE = "0001"
# A table every database of every release has: its presence without `alembic_version` marks a
# database made before migrations existed.
_EVERY_RELEASE_HAS = "repositories"
# Tables later revisions create: taking over a database from before migrations creates the
# baseline's tables only, and the migrations after it the rest.
_AFTER_BASELINE = frozenset(
    {
        "locks",
        "layer_inventories",
        "vulndb_advisories",
        "vulndb_packages",
        "vulndb_sources",
        "vulndb_archives",
        "scans",
        "scan_overrides",
        "aws_access_keys",
        "aws_request_signatures",
        "lifecycle_previews",
        "cache_stats_history",
    }
)


class SchemaMismatch(Exception):
    """The database's schema is not one this process may use as it is."""


class NewerDatabase(SchemaMismatch):
    """The database was made by a newer release."""


class MigrationNeeded(SchemaMismatch):
    """The database is behind this release and migrating it was not asked for."""


@dataclass(frozen=True)
class Migration:
    """What opening did to the schema: the revision found (None for a new database) and the one
    the database is at now."""

    found: str | None
    reached: str

    @property
    def migrated(self) -> bool:
        return self.found != self.reached


def head() -> str:
    """The newest revision this release knows."""
    revision = ScriptDirectory.from_config(_config(MIGRATIONS)).get_current_head()
    assert revision is not None
    return revision


async def bring_to_head(
    engine: AsyncEngine, *, migrate: bool, location: Path = MIGRATIONS
) -> Migration:
    """Bring the database behind `engine` to the head revision of the migrations at `location`,
    or refuse (SchemaMismatch)."""
    async with engine.begin() as conn:
        return await conn.run_sync(_bring_to_head, migrate, location)


def _bring_to_head(connection: Connection, migrate: bool, location: Path) -> Migration:
    config = _config(location, connection)
    scripts = ScriptDirectory.from_config(config)
    newest = scripts.get_current_head()
    assert newest is not None
    found = MigrationContext.configure(connection).get_current_revision()
    if found is None and inspect(connection).has_table(_EVERY_RELEASE_HAS):
        # Those releases created missing tables at every start: so does taking one over, so
        # that a data directory from before the newest of them still reaches the baseline.
        baseline = [t for t in schema.metadata.sorted_tables if t.name not in _AFTER_BASELINE]
        schema.metadata.create_all(connection, tables=baseline)
        command.stamp(config, BASELINE)
        found = BASELINE
    if found is not None and found not in {script.revision for script in scripts.walk_revisions()}:
        raise NewerDatabase(
            f"the metadata database was made by a newer pullthrough: revision {found}, "
            f"this release knows up to {newest}"
        )
    if found == newest:
        return Migration(found, newest)
    if not migrate and connection.dialect.name != "sqlite":
        if found is None:
            raise MigrationNeeded(
                f"the metadata database has no schema yet: run `pullthrough migrate` to create it "
                f"(revision {newest}), then start pullthrough"
            )
        raise MigrationNeeded(
            f"the metadata database is at revision {found} and this release needs {newest}: "
            "stop every pullthrough using it, run `pullthrough migrate`, then start this one"
        )
    command.upgrade(config, "head")
    return Migration(found, newest)


def _config(location: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config
