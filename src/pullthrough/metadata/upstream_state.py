"""What each upstream last said, shared by every worker and replica: the block a 429 asked for
(Retry-After) and the rate limit its headers reported (table `upstream_state`, per rule), whether
it answered lately and its last error (`upstream_health`, per rule), and how it asked to be
authenticated (`upstream_challenges`, per origin)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

MAX_ERROR_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class UpstreamStateRecord:
    """What one rule's upstream last said: a 429's block and its reported rate limit."""

    prefix: str
    blocked_until: float | None
    ratelimit_limit: int | None
    ratelimit_remaining: int | None
    ratelimit_window: int | None
    ratelimit_source: str | None
    ratelimit_seen_at: float | None
    updated_at: float


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


@dataclass(frozen=True, slots=True)
class StoredChallenge:
    """`basic`, or `bearer` with the realm tokens come from and the service they are for."""

    scheme: str
    realm: str | None = None
    service: str | None = None


class UpstreamStateStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # Blocks and rate limits, per rule

    async def blocked_until(self, prefix: str) -> float | None:
        """Until when the upstream of rule `prefix` asked (429) not to be sent requests."""
        u = schema.upstream_state
        query = select(u.c.blocked_until).where(u.c.prefix == prefix)
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else float(value)

    async def block(self, prefix: str, until: float) -> None:
        """Record a 429's block of rule `prefix`'s upstream; a later block already there stays."""
        u = schema.upstream_state
        now = time.time()
        later = case((u.c.blocked_until > until, u.c.blocked_until), else_=until)
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert(
                    conn,
                    u,
                    {"prefix": prefix, "blocked_until": until, "updated_at": now},
                    {"blocked_until": later, "updated_at": now},
                )
            )

    async def save_rate_limit(
        self,
        prefix: str,
        *,
        limit: int | None,
        remaining: int | None,
        window: int | None,
        source: str | None,
        seen_at: float,
    ) -> None:
        """Record the rate limit the upstream of rule `prefix` reported at `seen_at`."""
        quota = {
            "ratelimit_limit": limit,
            "ratelimit_remaining": remaining,
            "ratelimit_window": window,
            "ratelimit_source": source,
            "ratelimit_seen_at": seen_at,
            "updated_at": time.time(),
        }
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert(conn, schema.upstream_state, {"prefix": prefix, **quota}, quota)
            )

    async def states(self) -> list[UpstreamStateRecord]:
        """Every rule's block and rate limit, by prefix."""
        u = schema.upstream_state
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(u).order_by(u.c.prefix))
            return [
                UpstreamStateRecord(
                    prefix=row.prefix,
                    blocked_until=row.blocked_until,
                    ratelimit_limit=row.ratelimit_limit,
                    ratelimit_remaining=row.ratelimit_remaining,
                    ratelimit_window=row.ratelimit_window,
                    ratelimit_source=row.ratelimit_source,
                    ratelimit_seen_at=row.ratelimit_seen_at,
                    updated_at=row.updated_at,
                )
                for row in rows
            ]

    # Health, per rule

    async def record_health(self, batch: dict[str, UpstreamHealth]) -> None:
        """Add what each rule's upstream answered or failed lately to what is stored."""
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

    async def health(self) -> dict[str, UpstreamHealth]:
        """Each rule's upstream health, by prefix."""
        table = schema.upstream_health
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table))
            return {
                row.prefix: UpstreamHealth(row.last_success_at, row.last_error, row.last_error_at)
                for row in rows
            }

    # Authentication challenges, per origin

    async def challenge(self, origin: str) -> StoredChallenge | None:
        table = schema.upstream_challenges
        query = select(table.c.scheme, table.c.realm, table.c.service).where(
            table.c.origin == origin
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else StoredChallenge(row.scheme, row.realm, row.service)

    async def save_challenge(self, origin: str, challenge: StoredChallenge) -> None:
        values = {
            "scheme": challenge.scheme,
            "realm": challenge.realm,
            "service": challenge.service,
            "updated_at": time.time(),
        }
        async with self._engine.begin() as conn:
            table = schema.upstream_challenges
            await conn.execute(upsert(conn, table, {"origin": origin, **values}, values))
