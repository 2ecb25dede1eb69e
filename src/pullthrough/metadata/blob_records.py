"""Blob records: which blobs are stored (digest and size) and which repositories may serve
them. The bytes themselves are the storage driver's."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import insert_ignore


async def link_blobs(conn: AsyncConnection, repository_id: int, digests: Iterable[str]) -> None:
    """Let `repository_id` serve the blobs `digests`, inside the caller's transaction."""
    rows = [{"repository_id": repository_id, "digest": d} for d in dict.fromkeys(digests)]
    if rows:
        await conn.execute(insert_ignore(conn, schema.repository_blobs), rows)


class BlobRecordStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def link(self, repository_id: int, digest: str) -> None:
        """Let `repository_id` serve the blob `digest`."""
        async with self._engine.begin() as conn:
            await link_blobs(conn, repository_id, [digest])

    async def save(self, digest: str, size: int, repository_id: int) -> None:
        """Record a stored (verified) blob, and that `repository_id` may serve it."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert_ignore(
                    conn,
                    schema.blobs,
                    {"digest": digest, "size": size, "created_at": time.time()},
                )
            )
            await link_blobs(conn, repository_id, [digest])

    async def for_repository(self, repository: str, digest: str) -> tuple[int | None, bool]:
        """(size if the blob is stored, whether `repository` may serve it)."""
        b, rb, r = schema.blobs, schema.repository_blobs, schema.repositories
        linked = (
            select(func.count())
            .select_from(rb.join(r, r.c.id == rb.c.repository_id))
            .where(r.c.name == repository, rb.c.digest == digest)
            .scalar_subquery()
        )
        query = select(b.c.size, linked.label("linked")).where(b.c.digest == digest)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                linked_only: int = (await conn.execute(select(linked))).scalar_one()
                return None, bool(linked_only)
        return int(row.size), bool(row.linked)

    async def stored(self) -> list[tuple[str, int]]:
        """(digest, size) of every stored blob."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(schema.blobs.c.digest, schema.blobs.c.size))
            return [(row.digest, int(row.size)) for row in rows]

    async def forget(self, digests: Iterable[str]) -> None:
        """Drop the records of blobs whose bytes are gone."""
        chosen = list(digests)
        if not chosen:
            return
        async with self._engine.begin() as conn:
            await conn.execute(schema.blobs.delete().where(schema.blobs.c.digest.in_(chosen)))
