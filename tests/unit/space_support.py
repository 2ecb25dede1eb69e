"""Metadata stores to run the space tests over (a SQLite file, and PostgreSQL on 127.0.0.1),
and small builders of manifests and blobs with made-up digests."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from pullthrough.metadata.migrating import bring_to_head
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci import mediatypes
from pullthrough.oci.manifest import Descriptor, ParsedManifest

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.contract),
        pytest.param("postgresql", marks=[pytest.mark.contract, pytest.mark.postgres]),
    ]
)
async def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    """A fresh metadata store per test, on each backend."""
    if request.param == "sqlite":
        store = await MetadataStore.open(f"sqlite+aiosqlite:///{tmp_path / 'metadata.sqlite'}")
    else:
        # A schema of its own, so tests never touch what others keep in the database.
        name = f"space_{uuid.uuid4().hex[:12]}"
        admin = create_async_engine(POSTGRES_URL)
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        engine = create_async_engine(
            POSTGRES_URL, connect_args={"server_settings": {"search_path": name}}
        )
        await bring_to_head(engine, migrate=True)
        store = MetadataStore(engine)
    try:
        yield store
    finally:
        await store.close()
        if request.param == "postgresql":
            async with admin.begin() as conn:
                await conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
            await admin.dispose()


@pytest.fixture
def space(metadata: MetadataStore) -> SpaceStore:
    return SpaceStore(metadata.engine)


class Builder:
    """Caches made-up images into a metadata store, as the cache service would."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    async def repo(self, name: str) -> int:
        return await self.metadata.repositories.id(name, name.split("/")[0])

    async def image(
        self, repository: str, name: str, blobs: dict[str, int], tag: str | None = None
    ) -> str:
        """A single-platform manifest `name` over `blobs` (name → size); returns its digest."""
        parsed = ParsedManifest(
            media_type=mediatypes.OCI_MANIFEST,
            blobs=tuple(Descriptor(LAYER, digest_of(b), size) for b, size in blobs.items()),
        )
        return await self._save(repository, name, parsed, tag)

    async def index(
        self, repository: str, name: str, children: list[str], tag: str | None = None
    ) -> str:
        """An index `name` listing child manifests (by digest); returns its digest."""
        parsed = ParsedManifest(
            media_type=mediatypes.OCI_INDEX,
            children=tuple(Descriptor(mediatypes.OCI_MANIFEST, d, 100) for d in children),
        )
        return await self._save(repository, name, parsed, tag)

    async def _save(
        self, repository: str, name: str, parsed: ParsedManifest, tag: str | None
    ) -> str:
        repository_id = await self.repo(repository)
        digest = digest_of(name)
        await self.metadata.manifests.save(repository_id, digest, name.encode(), parsed)
        if tag is not None:
            await self.metadata.manifests.set_tag(repository_id, tag, digest, 1000.0)
        return digest

    async def blob(self, repository: str, name: str, size: int) -> str:
        """Record a stored blob (as a committed fill does)."""
        digest = digest_of(name)
        await self.metadata.blobs.save(digest, size, await self.repo(repository))
        return digest


@pytest.fixture
def build(metadata: MetadataStore) -> Builder:
    return Builder(metadata)
