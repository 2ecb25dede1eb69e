"""Whether each rule's upstream answered lately, and the last error it gave, for every worker."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

MAX_ERROR_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    @property
    def reachable(self) -> bool | None:
        """None until the upstream was asked anything; else whether its last word was an answer."""
        if self.last_success_at is None and self.last_error_at is None:
            return None
        if self.last_error_at is None:
            return True
        return self.last_success_at is not None and self.last_success_at > self.last_error_at

    def merge(self, later: UpstreamHealth) -> UpstreamHealth:
        success = max(
            (t for t in (self.last_success_at, later.last_success_at) if t is not None),
            default=None,
        )
        newer_error = (later.last_error_at or 0.0) >= (self.last_error_at or 0.0)
        source = later if newer_error and later.last_error_at is not None else self
        return UpstreamHealth(success, source.last_error, source.last_error_at)


class UpstreamHealthStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, batch: dict[str, UpstreamHealth]) -> None:
        table = schema.upstream_health
        now = time.time()
        async with self._engine.begin() as conn:
            for prefix, health in sorted(batch.items()):
                update: dict[str, object] = {"updated_at": now}
                if health.last_success_at is not None:
                    update["last_success_at"] = health.last_success_at
                if health.last_error_at is not None:
                    update["last_error"] = (health.last_error or "")[:MAX_ERROR_LENGTH]
                    update["last_error_at"] = health.last_error_at
                values = {
                    "prefix": prefix,
                    "last_success_at": health.last_success_at,
                    "last_error": (health.last_error or None)
                    and health.last_error[:MAX_ERROR_LENGTH],
                    "last_error_at": health.last_error_at,
                    "updated_at": now,
                }
                await conn.execute(upsert(conn, table, values, update))

    async def all(self) -> dict[str, UpstreamHealth]:
        table = schema.upstream_health
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table))
            return {
                row.prefix: UpstreamHealth(row.last_success_at, row.last_error, row.last_error_at)
                for row in rows
            }
