"""Queries for principals and the registry policy document.

Every write bumps the ACCESS revision in its transaction, so that what each process remembers
about logins, tokens and the policy is dropped within the revision bound (revisions.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import ACCESS, bump
from pullthrough.metadata.upserts import upsert, upsert_replacing


@dataclass(frozen=True, slots=True)
class PrincipalRow:
    name: str
    kind: str
    secret_hash: str
    org: str | None
    groups: tuple[str, ...]
    created_at: float
    updated_at: float

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"PrincipalRow(name={self.name!r}, kind={self.kind!r}, org={self.org!r})"


def _row(row: Any) -> PrincipalRow:
    return PrincipalRow(
        name=row.name,
        kind=row.kind,
        secret_hash=row.secret_hash,
        org=row.org,
        groups=tuple(json.loads(row.groups)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class AccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put_principal(
        self, name: str, kind: str, secret_hash: str, org: str | None, groups: tuple[str, ...]
    ) -> None:
        now = time.time()
        values = {
            "name": name,
            "kind": kind,
            "secret_hash": secret_hash,
            "org": org,
            "groups": json.dumps(list(groups)),
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            await conn.execute(upsert_replacing(conn, schema.principals, values))
            await bump(conn, ACCESS)

    async def principal(self, name: str) -> PrincipalRow | None:
        query = select(schema.principals).where(schema.principals.c.name == name)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row else None

    async def principals(self) -> list[PrincipalRow]:
        query = select(schema.principals).order_by(schema.principals.c.name)
        async with self.engine.connect() as conn:
            return [_row(row) for row in await conn.execute(query)]

    async def delete_principal(self, name: str) -> bool:
        table = schema.principals
        async with self.engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.name == name))
            # Its AWS access keys go with it: a principal added again later under the same
            # name does not inherit them.
            keys = schema.aws_access_keys
            await conn.execute(keys.delete().where(keys.c.principal == name))
            await bump(conn, ACCESS)
        return bool(result.rowcount)

    async def policy(self) -> tuple[str, float] | None:
        """The policy document's JSON and when it was last written, if one is set."""
        table = schema.registry_policy
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.id == 1))).first()
        return (row.document, row.updated_at) if row else None

    async def delete_policy(self) -> bool:
        """Forget the policy document: the default policy applies again."""
        table = schema.registry_policy
        async with self.engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.id == 1))
            await bump(conn, ACCESS)
        return bool(result.rowcount)

    async def put_policy(self, document: str) -> None:
        values = {"id": 1, "document": document, "updated_at": time.time()}
        update = {"document": document, "updated_at": values["updated_at"]}
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, schema.registry_policy, values, update))
            await bump(conn, ACCESS)
