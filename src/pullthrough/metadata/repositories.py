"""Repositories: the id of each local repository, created on first use with its template's
settings, and the catalog of those that hold something."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.holdings import holds_content
from pullthrough.metadata.revisions import CONTENT, Revisions
from pullthrough.metadata.templates import apply_template
from pullthrough.metadata.upserts import insert_ignore


class RepositoryStore:
    """Repositories, with this process's memory of their ids: dropped whenever the CONTENT
    revision moves, since garbage collection may drop a repository (its rule was deleted)."""

    def __init__(self, engine: AsyncEngine, revisions: Revisions) -> None:
        self._engine = engine
        self._revisions = revisions
        self._ids: dict[str, int] = {}
        self._ids_revision: int | None = None

    async def id(self, name: str, rule_prefix: str) -> int:
        """The id of the local repository `name`, created on first use: call it once there is
        something to store in it, so that a pull that fails leaves no empty repository."""
        revision = await self._revisions.value(CONTENT)
        if revision != self._ids_revision:
            self._ids.clear()
            self._ids_revision = revision
        cached = self._ids.get(name)
        if cached is not None:
            return cached
        r = schema.repositories
        async with self._engine.begin() as conn:
            created = await conn.execute(
                insert_ignore(
                    conn, r, {"name": name, "rule_prefix": rule_prefix, "created_at": time.time()}
                )
            )
            repo_id = int((await conn.execute(select(r.c.id).where(r.c.name == name))).scalar_one())
            if created.rowcount:
                await apply_template(conn, repo_id, name)
        self._ids[name] = repo_id
        return repo_id

    async def catalog(self, n: int | None, last: str | None) -> list[str]:
        """The names of the repositories that hold something, in order, after `last`."""
        r = schema.repositories
        query = select(r.c.name).where(holds_content(r.c.id)).order_by(r.c.name)
        if last:
            query = query.where(r.c.name > last)
        if n is not None:
            query = query.limit(n)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())
