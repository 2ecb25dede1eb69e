"""AWS access keys as stored (sealed secret keys, opaque bytes here), the signatures of signed
requests accepted lately (the replay defence), and lifecycle preview requests: the rows behind
the ECR-compatible API. Sealing and opening keys is access/aws_keys.py's.

Every write to keys bumps the ACCESS revision in its transaction, like every other credential
(revisions.py), so a deleted key is refused on every worker within the revision bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import ACCESS, bump
from pullthrough.metadata.upserts import upsert_replacing


@dataclass(frozen=True, slots=True)
class AwsKeyRecord:
    access_key_id: str
    principal: str
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    key_id: str
    created_at: float


def _record(row: Any) -> AwsKeyRecord:
    return AwsKeyRecord(
        access_key_id=row.access_key_id,
        principal=row.principal,
        nonce=bytes(row.nonce),
        ciphertext=bytes(row.ciphertext),
        key_id=row.key_id,
        created_at=row.created_at,
    )


class AwsKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, record: AwsKeyRecord) -> None:
        values = {
            "access_key_id": record.access_key_id,
            "principal": record.principal,
            "nonce": record.nonce,
            "ciphertext": record.ciphertext,
            "key_id": record.key_id,
            "created_at": record.created_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(upsert_replacing(conn, schema.aws_access_keys, values))
            await bump(conn, ACCESS)

    async def get(self, access_key_id: str) -> AwsKeyRecord | None:
        table = schema.aws_access_keys
        query = select(table).where(table.c.access_key_id == access_key_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def all(self, principal: str | None = None) -> list[AwsKeyRecord]:
        table = schema.aws_access_keys
        query = select(table).order_by(table.c.principal, table.c.created_at)
        if principal is not None:
            query = query.where(table.c.principal == principal)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def delete(self, access_key_id: str) -> bool:
        table = schema.aws_access_keys
        async with self._engine.begin() as conn:
            result = await conn.execute(
                table.delete().where(table.c.access_key_id == access_key_id)
            )
            await bump(conn, ACCESS)
        return bool(result.rowcount)


class SignatureLedger:
    """The signatures accepted lately, shared by every process through the database."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def first_use(self, signature: str, expires_at: float) -> bool:
        """Record `signature` as used until `expires_at`; False when it was already."""
        table = schema.aws_request_signatures
        try:
            async with self._engine.begin() as conn:
                await conn.execute(table.delete().where(table.c.expires_at < self._clock()))
                await conn.execute(
                    table.insert().values(signature=signature, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True


class LifecyclePreviews:
    """The policy text each repository's lifecycle preview was last started with."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self, repository: str, policy: str) -> None:
        values = {"repository": repository, "policy": policy, "started_at": time.time()}
        async with self._engine.begin() as conn:
            await conn.execute(upsert_replacing(conn, schema.lifecycle_previews, values))

    async def policy(self, repository: str) -> str | None:
        table = schema.lifecycle_previews
        query = select(table.c.policy).where(table.c.repository == repository)
        async with self._engine.connect() as conn:
            found: str | None = (await conn.execute(query)).scalar_one_or_none()
        return found
