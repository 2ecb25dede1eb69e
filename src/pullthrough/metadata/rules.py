"""The pull-through rules, stored: what the admin API and `pullthrough apply` change.

A new data directory is seeded once with the configuration file's rules (or the embedded
defaults); from then on this table is the truth, so a rule made over the API survives a restart
and a rule deleted over the API stays deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.config import RuleConfig
from pullthrough.metadata import schema
from pullthrough.metadata.upserts import insert_ignore

SEEDED = "rules_seeded"


class RuleConflict(Exception):
    """A change that would clash with another rule; the message says with which."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    rule: RuleConfig
    created_at: float
    updated_at: float


def _stored(row: Any) -> StoredRule:
    return StoredRule(
        rule=RuleConfig.model_validate(json.loads(row.document)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _document(rule: RuleConfig) -> str:
    return json.dumps(rule.model_dump(mode="json"), sort_keys=True)


class RuleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def seed(self, rules: Sequence[RuleConfig]) -> bool:
        """Store `rules` if this database never had rules; True if it did so now."""
        now = time.time()
        async with self._engine.begin() as conn:
            marker = {"name": SEEDED, "value": str(now), "updated_at": now}
            inserted = await conn.execute(insert_ignore(conn, schema.registry_settings, marker))
            if inserted.rowcount != 1:
                return False
            for rule in rules:
                await conn.execute(
                    insert_ignore(
                        conn,
                        schema.pull_through_rules,
                        {
                            "prefix": rule.prefix,
                            "document": _document(rule),
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                )
        return True

    async def all(self) -> list[StoredRule]:
        async with self._engine.connect() as conn:
            return await _all(conn)

    async def get(self, prefix: str) -> StoredRule | None:
        table = schema.pull_through_rules
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.prefix == prefix))).first()
        return None if row is None else _stored(row)

    async def create(self, rule: RuleConfig) -> StoredRule:
        """Add `rule`; RuleConflict if its prefix is taken or it is a second default."""
        taken = RuleConflict(
            f"a rule with prefix {rule.prefix!r} exists: update it (PUT) or delete it first"
        )
        try:
            async with self._engine.begin() as conn:
                current = await _all(conn)
                if any(s.rule.prefix == rule.prefix for s in current):
                    raise taken
                _check_default(rule, current)
                return await _write(conn, rule, created_at=None)
        except IntegrityError:  # created by another worker in the meantime
            raise taken from None

    async def put(self, rule: RuleConfig) -> tuple[StoredRule, bool]:
        """Create or replace the rule with `rule.prefix`; (the rule, whether it is new)."""
        async with self._engine.begin() as conn:
            current = await _all(conn)
            existing = next((s for s in current if s.rule.prefix == rule.prefix), None)
            _check_default(rule, current)
            created_at = None if existing is None else existing.created_at
            return await _write(conn, rule, created_at=created_at), existing is None

    async def delete(self, prefix: str) -> bool:
        """Delete the rule and its statistics. Its repositories are served no more (no rule
        routes to them) and the next garbage collection drops them (`lifecycle/gc.py`),
        unless a rule with this prefix is created again first."""
        table, stats = schema.pull_through_rules, schema.cache_stats
        async with self._engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.prefix == prefix))
            if result.rowcount:
                await conn.execute(stats.delete().where(stats.c.prefix == prefix))
        return bool(result.rowcount)


async def _all(conn: AsyncConnection) -> list[StoredRule]:
    table = schema.pull_through_rules
    rows = await conn.execute(select(table).order_by(table.c.prefix))
    return [_stored(row) for row in rows]


def _check_default(rule: RuleConfig, current: Sequence[StoredRule]) -> None:
    if not rule.default:
        return
    other = next((s.rule for s in current if s.rule.default and s.rule.prefix != rule.prefix), None)
    if other is not None:
        raise RuleConflict(
            f"rule {other.prefix!r} is already the default (unprefixed names go there): set "
            f"default: false on it first, or leave default off for {rule.prefix!r}"
        )


async def _write(conn: AsyncConnection, rule: RuleConfig, created_at: float | None) -> StoredRule:
    table = schema.pull_through_rules
    now = time.time()
    document = _document(rule)
    if created_at is None:
        await conn.execute(
            table.insert().values(
                prefix=rule.prefix, document=document, created_at=now, updated_at=now
            )
        )
        return StoredRule(rule, now, now)
    await conn.execute(
        table.update()
        .where(table.c.prefix == rule.prefix)
        .values(document=document, updated_at=now)
    )
    return StoredRule(rule, created_at, now)
