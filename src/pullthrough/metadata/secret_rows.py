"""Secret rows: sealed upstream credentials as stored. Sealing and opening them is
`access/secrets.py`'s; here they are opaque bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert_replacing


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


class SecretRowStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, name: str, *, nonce: bytes, ciphertext: bytes, key_id: str) -> bool:
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
        async with self._engine.begin() as conn:
            existed = (await conn.execute(select(s.c.name).where(s.c.name == name))).first()
            await conn.execute(upsert_replacing(conn, s, values))
        return existed is None

    async def get(self, name: str) -> SecretRecord | None:
        s = schema.secrets
        async with self._engine.connect() as conn:
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

    async def listing(self) -> list[SecretListing]:
        """Every secret's name and timestamps, by name; never the sealed value."""
        s = schema.secrets
        query = select(s.c.name, s.c.created_at, s.c.updated_at).order_by(s.c.name)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [SecretListing(row.name, row.created_at, row.updated_at) for row in rows]

    async def delete(self, name: str) -> bool:
        """Forget the secret `name`; False when there was none."""
        s = schema.secrets
        async with self._engine.begin() as conn:
            result = await conn.execute(s.delete().where(s.c.name == name))
        return bool(result.rowcount)
