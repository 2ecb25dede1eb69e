"""Manifests, tags and referrers: the manifests the cache verified, which repository holds
which, what each references, where tags point, and the manifests whose subject is another."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.blob_records import link_blobs
from pullthrough.metadata.upserts import insert_ignore, upsert
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


def _manifest_from_row(row: Any) -> StoredManifest:
    return StoredManifest(
        digest=row.digest,
        media_type=row.media_type,
        content=bytes(row.content),
        artifact_type=row.artifact_type,
        subject=row.subject,
    )


class ManifestStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def in_repository(self, repository: str, digest: str) -> StoredManifest | None:
        """The manifest `digest` if `repository` holds it."""
        m, rm, r = schema.manifests, schema.repository_manifests, schema.repositories
        query = (
            select(m)
            .join(rm, rm.c.digest == m.c.digest)
            .join(r, r.c.id == rm.c.repository_id)
            .where(r.c.name == repository, m.c.digest == digest)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _manifest_from_row(row) if row else None

    async def get(self, digest: str) -> StoredManifest | None:
        """The manifest `digest`, whichever repository holds it."""
        query = select(schema.manifests).where(schema.manifests.c.digest == digest)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _manifest_from_row(row) if row else None

    async def tag(self, repository: str, tag: str) -> TaggedManifest | None:
        """The manifest `tag` points at in `repository`, and when upstream last confirmed it."""
        m, t, r = schema.manifests, schema.tags, schema.repositories
        query = (
            select(m, t.c.checked_at)
            .join(t, t.c.digest == m.c.digest)
            .join(r, r.c.id == t.c.repository_id)
            .where(r.c.name == repository, t.c.name == tag)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return TaggedManifest(_manifest_from_row(row), row.checked_at) if row else None

    async def save(
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
        async with self._engine.begin() as conn:
            await conn.execute(
                insert_ignore(
                    conn,
                    schema.manifests,
                    {
                        "digest": digest,
                        "media_type": parsed.media_type,
                        "size": len(content),
                        "content": content,
                        "subject": parsed.subject.digest if parsed.subject else None,
                        "artifact_type": parsed.artifact_type,
                        "created_at": now,
                    },
                )
            )
            await conn.execute(
                insert_ignore(
                    conn,
                    schema.repository_manifests,
                    {"repository_id": repository_id, "digest": digest, "created_at": now},
                )
            )
            if references:
                await conn.execute(insert_ignore(conn, schema.manifest_references), references)
            await link_blobs(conn, repository_id, (d.digest for d in parsed.blobs))

    async def set_tag(self, repository_id: int, tag: str, digest: str, checked_at: float) -> None:
        """Point `tag` at `digest`, as upstream confirmed at `checked_at`."""
        values = {
            "repository_id": repository_id,
            "name": tag,
            "digest": digest,
            "checked_at": checked_at,
            "created_at": checked_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert(conn, schema.tags, values, {"digest": digest, "checked_at": checked_at})
            )

    async def tags(self, repository: str, n: int | None, last: str | None) -> list[str]:
        """The tags of `repository`, in order, after `last`, at most `n`."""
        t, r = schema.tags, schema.repositories
        query = select(t.c.name).join(r, r.c.id == t.c.repository_id).where(r.c.name == repository)
        if last:
            query = query.where(t.c.name > last)
        query = query.order_by(t.c.name)
        if n is not None:
            query = query.limit(n)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def referrers(self, repository: str, subject: str) -> list[StoredManifest]:
        """The manifests `repository` holds whose subject is `subject`, by digest."""
        m, rm, r = schema.manifests, schema.repository_manifests, schema.repositories
        query = (
            select(m)
            .join(rm, rm.c.digest == m.c.digest)
            .join(r, r.c.id == rm.c.repository_id)
            .where(r.c.name == repository, m.c.subject == subject)
            .order_by(m.c.digest)
        )
        async with self._engine.connect() as conn:
            return [_manifest_from_row(row) for row in await conn.execute(query)]
