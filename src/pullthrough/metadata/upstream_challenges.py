"""How each upstream asked to be authenticated, shared by every worker and replica."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert


@dataclass(frozen=True, slots=True)
class StoredChallenge:
    """`basic`, or `bearer` with the realm tokens come from and the service they are for."""

    scheme: str
    realm: str | None = None
    service: str | None = None


class UpstreamChallengeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, origin: str) -> StoredChallenge | None:
        table = schema.upstream_challenges
        query = select(table.c.scheme, table.c.realm, table.c.service).where(
            table.c.origin == origin
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else StoredChallenge(row.scheme, row.realm, row.service)

    async def save(self, origin: str, challenge: StoredChallenge) -> None:
        values = {
            "scheme": challenge.scheme,
            "realm": challenge.realm,
            "service": challenge.service,
            "updated_at": time.time(),
        }
        async with self._engine.begin() as conn:
            table = schema.upstream_challenges
            await conn.execute(upsert(conn, table, {"origin": origin, **values}, values))
