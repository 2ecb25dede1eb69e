"""Opening a metadata database brings it to this release's schema, or refuses to.

`tests/data/metadata-pre-migrations.sqlite` was made by the release before migrations existed
(`MetadataStore.open` then `create_all`), through the stores: repository
`docker.io/library/alpine` holding blobs `layer-bytes` and `{}` and an OCI image manifest of
them tagged `3.20` (checked at 1000.0); the seeded rule `docker.io` → registry-1.docker.io
(default); robot principal `ci` (hash `hash`, group `builders`); secret `hub` (key `k1`).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pullthrough.cli.options import run_on_metadata
from pullthrough.config import ConfigError, Settings, load_settings
from pullthrough.metadata import schema
from pullthrough.metadata.migrating import (
    _AFTER_BASELINE,
    BASELINE,
    MIGRATIONS,
    MigrationNeeded,
    NewerDatabase,
    bring_to_head,
    head,
)
from pullthrough.metadata.opening import database_url
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.rules import RuleStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from tests.unit.space_support import POSTGRES_URL

FIXTURE = Path(__file__).parent.parent / "data" / "metadata-pre-migrations.sqlite"
ALPINE = "docker.io/library/alpine"


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _version(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), schema.metadata))


def _next_revision() -> str:
    return f"{int(head()) + 1:04d}"


def _with_a_second_revision(tmp_path: Path) -> Path:
    """These migrations plus a revision after the head, as the next release would have them."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / f"v{_next_revision()}_notes.py").write_text(
        '"""A table of notes."""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f'revision = "{_next_revision()}"\n'
        f'down_revision = "{head()}"\n\n\n'
        "def upgrade():\n"
        '    op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))\n\n\n'
        "def downgrade():\n"
        '    op.drop_table("notes")\n'
    )
    return location


@pytest.fixture
async def postgres_schema() -> AsyncIterator[AsyncEngine]:
    """An engine over an empty PostgreSQL schema of its own, dropped afterwards."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    engine = create_async_engine(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": name}}
    )
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        await admin.dispose()


async def test_a_database_made_before_migrations_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    shutil.copyfile(FIXTURE, path)
    metadata = await MetadataStore.open(sqlite_url(path))
    try:
        layer, config = b"layer-bytes", b"{}"
        tagged = await metadata.manifests.tag(ALPINE, "3.20")
        assert tagged is not None
        assert tagged.checked_at == 1000.0
        assert tagged.manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
        assert tagged.manifest.digest == _digest(tagged.manifest.content)
        assert await metadata.manifests.tags(ALPINE, None, None) == ["3.20"]
        assert sorted(await metadata.blobs.stored()) == sorted(
            [(_digest(layer), len(layer)), (_digest(config), len(config))]
        )
        assert (await metadata.blobs.for_repository(ALPINE, _digest(layer)))[0] == len(layer)
        rule = await RuleStore(metadata.engine).get("docker.io")
        assert rule is not None
        assert rule.rule.upstream == "https://registry-1.docker.io"
        assert rule.rule.default
        principal = await AccessStore(metadata.engine).principal("ci")
        assert principal is not None
        assert (principal.kind, principal.groups) == ("robot", ("builders",))
        secret = await metadata.secrets.get("hub")
        assert secret is not None
        assert (secret.key_id, secret.ciphertext) == ("k1", b"ciphertext")
        async with metadata.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await metadata.close()
    assert _version(path) == [head()]


async def test_a_database_from_an_older_release_gets_the_tables_it_lacked(tmp_path: Path) -> None:
    """Releases before migrations created missing tables at every start; taking over a data
    directory from before the newest of them does the same before stamping the baseline."""
    path = tmp_path / "metadata.sqlite"
    shutil.copyfile(FIXTURE, path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE revisions")
    metadata = await MetadataStore.open(sqlite_url(path))
    try:
        assert await metadata.manifests.tag(ALPINE, "3.20") is not None
        async with metadata.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await metadata.close()
    assert _version(path) == [head()]


async def test_a_new_sqlite_database_reaches_the_head(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    metadata = await MetadataStore.open(sqlite_url(path))
    try:
        async with metadata.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await metadata.close()
    assert _version(path) == [head()]


@pytest.mark.contract
@pytest.mark.postgres
async def test_a_new_postgresql_schema_reaches_the_head_when_asked(
    postgres_schema: AsyncEngine,
) -> None:
    with pytest.raises(MigrationNeeded) as refused:
        await bring_to_head(postgres_schema, migrate=False)
    assert "run `pullthrough migrate` to create it" in str(refused.value)
    migration = await bring_to_head(postgres_schema, migrate=True)
    assert (migration.found, migration.reached) == (None, head())
    async with postgres_schema.connect() as conn:
        assert await conn.run_sync(_differences) == []
        version = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
        assert version.scalars().all() == [head()]


@pytest.mark.contract
@pytest.mark.postgres
async def test_a_postgresql_database_made_before_migrations_is_stamped(
    postgres_schema: AsyncEngine,
) -> None:
    """Stamped as the baseline, then migrated like any database at it: only when asked."""
    baseline = [t for t in schema.metadata.sorted_tables if t.name not in _AFTER_BASELINE]
    async with postgres_schema.begin() as conn:
        await conn.run_sync(schema.metadata.create_all, tables=baseline)
    with pytest.raises(MigrationNeeded) as refused:
        await bring_to_head(postgres_schema, migrate=False)
    assert f"at revision {BASELINE} and this release needs {head()}" in str(refused.value)
    migration = await bring_to_head(postgres_schema, migrate=True)
    assert (migration.found, migration.reached, migration.migrated) == (BASELINE, head(), True)
    async with postgres_schema.connect() as conn:
        assert await conn.run_sync(_differences) == []


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    await (await MetadataStore.open(sqlite_url(path))).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(NewerDatabase) as refused:
        await MetadataStore.open(sqlite_url(path))
    assert str(refused.value) == (
        "the metadata database was made by a newer pullthrough: revision 9999, "
        f"this release knows up to {head()}"
    )


async def test_sqlite_behind_the_head_migrates_itself(tmp_path: Path) -> None:
    engine = create_async_engine(sqlite_url(tmp_path / "metadata.sqlite"))
    try:
        await bring_to_head(engine, migrate=False)
        migration = await bring_to_head(
            engine, migrate=False, location=_with_a_second_revision(tmp_path)
        )
        assert (migration.found, migration.reached, migration.migrated) == (
            head(),
            _next_revision(),
            True,
        )
    finally:
        await engine.dispose()


@pytest.mark.contract
@pytest.mark.postgres
async def test_postgresql_behind_the_head_is_migrated_only_when_asked(
    postgres_schema: AsyncEngine, tmp_path: Path
) -> None:
    await bring_to_head(postgres_schema, migrate=True)
    location = _with_a_second_revision(tmp_path)
    with pytest.raises(MigrationNeeded) as refused:
        await bring_to_head(postgres_schema, migrate=False, location=location)
    assert str(refused.value) == (
        f"the metadata database is at revision {head()} and this release needs "
        f"{_next_revision()}: stop every pullthrough using it, run `pullthrough migrate`, then "
        "start this one"
    )
    migration = await bring_to_head(postgres_schema, migrate=True, location=location)
    assert (migration.found, migration.reached) == (head(), _next_revision())
    async with postgres_schema.connect() as conn:
        notes = await conn.exec_driver_sql("SELECT count(*) FROM notes")
        assert notes.scalar_one() == 0


def test_the_database_url_setting_names_the_driver(tmp_path: Path) -> None:
    environ = {"PULLTHROUGH_DATABASE_URL": "postgresql://pt@db.internal:5432/cache"}
    settings = load_settings(None, environ=environ)
    assert database_url(settings) == "postgresql+asyncpg://pt@db.internal:5432/cache"
    other = Settings(database_url=f"sqlite:///{tmp_path}/meta.sqlite")
    assert database_url(other) == f"sqlite+aiosqlite:///{tmp_path}/meta.sqlite"
    default = Settings(data_dir=tmp_path)
    assert database_url(default) == sqlite_url(tmp_path.resolve() / "metadata.sqlite")
    with pytest.raises(ConfigError, match="database_url starts with postgresql:// or sqlite:///"):
        load_settings(None, environ={"PULLTHROUGH_DATABASE_URL": "mysql://db/cache"})


def test_a_command_on_a_newer_database_exits_2_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "meta.sqlite"
    config = tmp_path / "pullthrough.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\ndatabase_url: sqlite:///{path}\n")
    asyncio.run(_close(MetadataStore.open(sqlite_url(path))))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(typer.Exit) as exited:
        run_on_metadata(config, _nothing)
    assert exited.value.exit_code == 2
    assert "made by a newer pullthrough: revision 9999" in capsys.readouterr().err


async def _close(opening: Awaitable[MetadataStore]) -> None:
    await (await opening).close()


async def _nothing(_metadata: MetadataStore, _settings: Settings) -> None:
    return None
