"""Leases: one worker (or replica) at a time runs each background job. Expiry is measured by
the database's clock (`lease_locks.database_now`), which every replica shares."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.lease_locks import database_now
from pullthrough.metadata.upserts import upsert


class LeaseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease if it is free, expired, or already ours; True when we hold it."""
        table = schema.leases
        async with self.engine.begin() as conn:
            now = await database_now(conn)
            await conn.execute(
                upsert(
                    conn,
                    table,
                    {"name": name, "holder": holder, "expires_at": now + ttl},
                    {"holder": holder, "expires_at": now + ttl},
                    where=or_(table.c.expires_at < now, table.c.holder == holder),
                )
            )
            current: str = (
                await conn.execute(select(table.c.holder).where(table.c.name == name))
            ).scalar_one()
        return bool(current == holder)

    async def release(self, name: str, holder: str) -> None:
        table = schema.leases
        async with self.engine.begin() as conn:
            await conn.execute(table.delete().where(table.c.name == name, table.c.holder == holder))
