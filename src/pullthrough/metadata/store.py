"""Queries over the metadata schema: the only module that writes SQL."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, case, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from pullthrough.metadata import schema
from pullthrough.metadata.holdings import holds_content
from pullthrough.metadata.revisions import CONTENT, Revisions
from pullthrough.metadata.templates import apply_template
from pullthrough.metadata.upserts import upsert
from pullthrough.oci.manifest import ParsedManifest


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes
    artifact_type: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class TaggedManifest:
    manifest: StoredManifest
    checked_at: float


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite database file `path`."""
    return f"sqlite+aiosqlite:///{path}"


@dataclass(frozen=True, slots=True)
class UpstreamStateRecord:
    """What one rule's upstream last said: a 429's block and its reported rate limit."""

    prefix: str
    blocked_until: float | None
    ratelimit_limit: int | None
    ratelimit_remaining: int | None
    ratelimit_window: int | None
    ratelimit_source: str | None
    ratelimit_seen_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class CacheTotals:
    """How much the cache holds."""

    repositories: int
    manifests: int
    tags: int
    blobs: int
    blob_bytes: int


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A sealed secret as stored; only access/secrets.py can open it."""

    name: str
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    key_id: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class SecretListing:
    """A secret's name and timestamps: all that is ever shown of it."""

    name: str
    created_at: float
    updated_at: float


def _manifest_from_row(row: Any) -> StoredManifest:
    return StoredManifest(
        digest=row.digest,
        media_type=row.media_type,
        content=bytes(row.content),
        artifact_type=row.artifact_type,
        subject=row.subject,
    )


class MetadataStore:
    """SQLite by default; PostgreSQL through the same queries."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # This process's view of the revision counters, shared by what it remembers of the
        # metadata (repository ids here, the manifest memo) so that it is read once per bound.
        self.revisions = Revisions(engine)
        self._repository_ids: dict[str, int] = {}
        self._ids_revision: int | None = None

    @classmethod
    async def open(cls, url: str) -> MetadataStore:
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

        async with engine.begin() as conn:
            await conn.run_sync(schema.metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def _insert_ignore(self, table: Table, conn: AsyncConnection) -> Insert:
        if conn.dialect.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    # Repositories

    async def repository_id(self, name: str, rule_prefix: str) -> int:
        """The id of the local repository `name`, created on first use: call it once there is
        something to store in it, so that a pull that fails leaves no empty repository."""
        # Garbage collection may drop a repository (its rule was deleted): forget the ids.
        revision = await self.revisions.value(CONTENT)
        if revision != self._ids_revision:
            self._repository_ids.clear()
            self._ids_revision = revision
        cached = self._repository_ids.get(name)
        if cached is not None:
            return cached
        async with self.engine.begin() as conn:
            created = await conn.execute(
                self._insert_ignore(schema.repositories, conn).values(
                    name=name, rule_prefix=rule_prefix, created_at=time.time()
                )
            )
            repo_id: int = (
                await conn.execute(
                    select(schema.repositories.c.id).where(schema.repositories.c.name == name)
                )
            ).scalar_one()
            if created.rowcount:
                await apply_template(conn, repo_id, name)
        self._repository_ids[name] = repo_id
        return int(repo_id)

    async def catalog(self, n: int | None, last: str | None) -> list[str]:
        """The names of the repositories that hold something, in order, after `last`."""
        r = schema.repositories
        query = select(r.c.name).where(holds_content(r.c.id)).order_by(r.c.name)
        if last:
            query = query.where(schema.repositories.c.name > last)
        if n is not None:
            query = query.limit(n)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    # Manifests and tags

    async def manifest_in_repository(self, repository: str, digest: str) -> StoredManifest | None:
        m, rm, r = schema.manifests, schema.repository_manifests, schema.repositories
        query = (
            select(m)
            .join(rm, rm.c.digest == m.c.digest)
            .join(r, r.c.id == rm.c.repository_id)
            .where(r.c.name == repository, m.c.digest == digest)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _manifest_from_row(row) if row else None

    async def manifest(self, digest: str) -> StoredManifest | None:
        query = select(schema.manifests).where(schema.manifests.c.digest == digest)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _manifest_from_row(row) if row else None

    async def tag(self, repository: str, tag: str) -> TaggedManifest | None:
        m, t, r = schema.manifests, schema.tags, schema.repositories
        query = (
            select(m, t.c.checked_at)
            .join(t, t.c.digest == m.c.digest)
            .join(r, r.c.id == t.c.repository_id)
            .where(r.c.name == repository, t.c.name == tag)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return TaggedManifest(_manifest_from_row(row), row.checked_at) if row else None

    async def save_manifest(
        self, repository_id: int, digest: str, content: bytes, parsed: ParsedManifest
    ) -> None:
        """Record a verified manifest, what it references, and that `repository_id` holds it."""
        now = time.time()
        references = [
            {"manifest_digest": digest, "target_digest": d.digest, "kind": "blob"}
            for d in parsed.blobs
        ]
        references += [
            {"manifest_digest": digest, "target_digest": d.digest, "kind": "manifest"}
            for d in parsed.children
        ]
        async with self.engine.begin() as conn:
            await conn.execute(
                self._insert_ignore(schema.manifests, conn).values(
                    digest=digest,
                    media_type=parsed.media_type,
                    size=len(content),
                    content=content,
                    subject=parsed.subject.digest if parsed.subject else None,
                    artifact_type=parsed.artifact_type,
                    created_at=now,
                )
            )
            await conn.execute(
                self._insert_ignore(schema.repository_manifests, conn).values(
                    repository_id=repository_id, digest=digest, created_at=now
                )
            )
            if references:
                await conn.execute(
                    self._insert_ignore(schema.manifest_references, conn), references
                )
            await self._link_blobs(conn, repository_id, (d.digest for d in parsed.blobs))

    async def set_tag(self, repository_id: int, tag: str, digest: str, checked_at: float) -> None:
        values = {
            "repository_id": repository_id,
            "name": tag,
            "digest": digest,
            "checked_at": checked_at,
            "created_at": checked_at,
        }
        async with self.engine.begin() as conn:
            table = schema.tags
            stmt: Any
            if conn.dialect.name == "postgresql":
                stmt = postgresql.insert(table).values(**values)
            else:
                stmt = sqlite.insert(table).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.repository_id, table.c.name],
                set_={"digest": digest, "checked_at": checked_at},
            )
            await conn.execute(stmt)

    async def list_tags(self, repository: str, n: int | None, last: str | None) -> list[str]:
        t, r = schema.tags, schema.repositories
        query = select(t.c.name).join(r, r.c.id == t.c.repository_id).where(r.c.name == repository)
        if last:
            query = query.where(t.c.name > last)
        query = query.order_by(t.c.name)
        if n is not None:
            query = query.limit(n)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def referrers(self, repository: str, subject: str) -> list[StoredManifest]:
        m, rm, r = schema.manifests, schema.repository_manifests, schema.repositories
        query = (
            select(m)
            .join(rm, rm.c.digest == m.c.digest)
            .join(r, r.c.id == rm.c.repository_id)
            .where(r.c.name == repository, m.c.subject == subject)
            .order_by(m.c.digest)
        )
        async with self.engine.connect() as conn:
            return [_manifest_from_row(row) for row in await conn.execute(query)]

    async def repository_has_manifest(self, repository: str) -> bool:
        r = schema.repositories
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(r.c.id).where(r.c.name == repository))).first()
        return row is not None

    # Blobs

    async def _link_blobs(
        self, conn: AsyncConnection, repository_id: int, digests: Iterable[str]
    ) -> None:
        rows = [{"repository_id": repository_id, "digest": d} for d in dict.fromkeys(digests)]
        if rows:
            await conn.execute(self._insert_ignore(schema.repository_blobs, conn), rows)

    async def link_blob(self, repository_id: int, digest: str) -> None:
        async with self.engine.begin() as conn:
            await self._link_blobs(conn, repository_id, [digest])

    async def save_blob(self, digest: str, size: int, repository_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                self._insert_ignore(schema.blobs, conn).values(
                    digest=digest, size=size, created_at=time.time()
                )
            )
            await self._link_blobs(conn, repository_id, [digest])

    async def blob_for_repository(self, repository: str, digest: str) -> tuple[int | None, bool]:
        """(size if the blob is stored, whether `repository` may serve it)."""
        b, rb, r = schema.blobs, schema.repository_blobs, schema.repositories
        linked = (
            select(func.count())
            .select_from(rb.join(r, r.c.id == rb.c.repository_id))
            .where(r.c.name == repository, rb.c.digest == digest)
            .scalar_subquery()
        )
        query = select(b.c.size, linked.label("linked")).where(b.c.digest == digest)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                linked_only: int = (await conn.execute(select(linked))).scalar_one()
                return None, bool(linked_only)
        return int(row.size), bool(row.linked)

    async def stored_blobs(self) -> list[tuple[str, int]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(schema.blobs.c.digest, schema.blobs.c.size))
            return [(row.digest, int(row.size)) for row in rows]

    async def forget_blobs(self, digests: Iterable[str]) -> None:
        chosen = list(digests)
        if not chosen:
            return
        async with self.engine.begin() as conn:
            await conn.execute(schema.blobs.delete().where(schema.blobs.c.digest.in_(chosen)))

    # Upstream state, shared by the worker processes

    async def _upsert(self, table: Table, values: dict[str, Any], update: dict[str, Any]) -> None:
        """Insert `values`, or apply `update` to the row with the same primary key."""
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, table, values, update))

    async def upstream_blocked_until(self, prefix: str) -> float | None:
        """Until when the upstream of rule `prefix` asked (429) not to be sent requests."""
        u = schema.upstream_state
        query = select(u.c.blocked_until).where(u.c.prefix == prefix)
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else float(value)

    async def block_upstream(self, prefix: str, until: float) -> None:
        """Record a 429's block of rule `prefix`'s upstream; a later block already there stays."""
        u = schema.upstream_state
        now = time.time()
        later = case((u.c.blocked_until > until, u.c.blocked_until), else_=until)
        await self._upsert(
            u,
            {"prefix": prefix, "blocked_until": until, "updated_at": now},
            {"blocked_until": later, "updated_at": now},
        )

    async def save_rate_limit(
        self,
        prefix: str,
        *,
        limit: int | None,
        remaining: int | None,
        window: int | None,
        source: str | None,
        seen_at: float,
    ) -> None:
        """Record the rate limit the upstream of rule `prefix` reported at `seen_at`."""
        quota = {
            "ratelimit_limit": limit,
            "ratelimit_remaining": remaining,
            "ratelimit_window": window,
            "ratelimit_source": source,
            "ratelimit_seen_at": seen_at,
            "updated_at": time.time(),
        }
        await self._upsert(schema.upstream_state, {"prefix": prefix, **quota}, quota)

    async def upstream_states(self) -> list[UpstreamStateRecord]:
        u = schema.upstream_state
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(u).order_by(u.c.prefix))
            return [
                UpstreamStateRecord(
                    prefix=row.prefix,
                    blocked_until=row.blocked_until,
                    ratelimit_limit=row.ratelimit_limit,
                    ratelimit_remaining=row.ratelimit_remaining,
                    ratelimit_window=row.ratelimit_window,
                    ratelimit_source=row.ratelimit_source,
                    ratelimit_seen_at=row.ratelimit_seen_at,
                    updated_at=row.updated_at,
                )
                for row in rows
            ]

    # Totals

    async def cache_totals(self) -> CacheTotals:
        """What is cached; a repository counts while it holds something."""

        def count(table: Table) -> Any:
            return select(func.count()).select_from(table).scalar_subquery()

        r = schema.repositories
        query = select(
            select(func.count())
            .select_from(r)
            .where(holds_content(r.c.id))
            .scalar_subquery()
            .label("repositories"),
            count(schema.manifests).label("manifests"),
            count(schema.tags).label("tags"),
            count(schema.blobs).label("blobs"),
            select(func.coalesce(func.sum(schema.blobs.c.size), 0))
            .scalar_subquery()
            .label("blob_bytes"),
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return CacheTotals(
            repositories=int(row.repositories),
            manifests=int(row.manifests),
            tags=int(row.tags),
            blobs=int(row.blobs),
            blob_bytes=int(row.blob_bytes),
        )

    # Secrets (sealed upstream credentials; see access/secrets.py)

    async def save_secret(self, name: str, *, nonce: bytes, ciphertext: bytes, key_id: str) -> bool:
        """Store a sealed secret under `name`, replacing any; True when it is new."""
        s = schema.secrets
        now = time.time()
        values = {
            "name": name,
            "nonce": nonce,
            "ciphertext": ciphertext,
            "key_id": key_id,
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            existed = (await conn.execute(select(s.c.name).where(s.c.name == name))).first()
            stmt: Any = (
                postgresql.insert(s) if conn.dialect.name == "postgresql" else sqlite.insert(s)
            ).values(**values)
            replace = {k: v for k, v in values.items() if k not in ("name", "created_at")}
            stmt = stmt.on_conflict_do_update(index_elements=[s.c.name], set_=replace)
            await conn.execute(stmt)
        return existed is None

    async def secret(self, name: str) -> SecretRecord | None:
        s = schema.secrets
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(s).where(s.c.name == name))).first()
        if row is None:
            return None
        return SecretRecord(
            name=row.name,
            nonce=bytes(row.nonce),
            ciphertext=bytes(row.ciphertext),
            key_id=row.key_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def secret_listing(self) -> list[SecretListing]:
        """Every secret's name and timestamps, by name; never the sealed value."""
        s = schema.secrets
        query = select(s.c.name, s.c.created_at, s.c.updated_at).order_by(s.c.name)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [SecretListing(row.name, row.created_at, row.updated_at) for row in rows]

    async def delete_secret(self, name: str) -> bool:
        """Forget the secret `name`; False when there was none."""
        s = schema.secrets
        async with self.engine.begin() as conn:
            result = await conn.execute(s.delete().where(s.c.name == name))
        return bool(result.rowcount)
