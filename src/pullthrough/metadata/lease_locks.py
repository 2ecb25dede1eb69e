"""Locks that span replicas: lease rows in the metadata database's `locks` table.

The `Locks` of `storage/locks.py` for replicas sharing one PostgreSQL (it works on SQLite too).
A lock is a row naming its holder (a random token per lock object), the advertise URL of the
replica holding it, and when the lease expires. Taking the lock writes the row when there is
none, or when the one there has expired; while the lock is held, a heartbeat task pushes the
expiry on every `ttl / 4` seconds. A holder that dies (kill -9, a lost host) stops renewing, so
its lease lapses at most `ttl` seconds after its last renewal and the next taker gets it.
Release deletes the row only while it is still ours. `is_free` repeats a "held" answer for one
poll interval (50 ms) without asking again: followers ask it in a tight loop. Expiry is measured
by the database's clock on PostgreSQL, so replicas whose clocks disagree still agree on who
holds what.

Advisory locks would free a dead holder's lock at once, but they belong to one connection each
(a pool connection pinned per running fill) and say nothing about who holds them; the row says
which replica to stream a running fill from (`holder_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

log = logging.getLogger(__name__)

# How long a lease outlives its holder's last renewal; renewals come every LEASE_TTL / 4.
LEASE_TTL = 10.0
# How often a lock another holder has is looked at again by `acquire`.
POLL_SECONDS = 0.05
# Rows whose holder died and whose key nobody took since are deleted once this old.
_SWEEP_AFTER = 3600.0
_SWEEP_EVERY = 600.0


async def database_now(conn: AsyncConnection) -> float:
    """Now, in UNIX seconds, by the clock every replica shares: the database server's."""
    if conn.dialect.name == "postgresql":
        seconds = (
            await conn.execute(select(func.extract("epoch", func.clock_timestamp())))
        ).scalar_one()
        return float(seconds)
    return time.time()  # SQLite: one host, one clock


class LeaseLocks:
    """The locks of every replica sharing one metadata database. `holder_url` is the URL the
    other replicas reach this one at (`Settings.advertised_url`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        holder_url: str,
        *,
        ttl: float = LEASE_TTL,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.engine = engine
        self.holder_url = holder_url
        self.ttl = ttl
        self.poll = poll
        self._held: set[LeaseLock] = set()
        self._swept_at = time.monotonic()

    def named(self, *parts: str) -> LeaseLock:
        return LeaseLock(self, "named:" + hashlib.sha256("\0".join(parts).encode()).hexdigest())

    def blob_fill(self, algorithm: str, hex_digest: str) -> LeaseLock:
        return LeaseLock(self, f"blob-fill:{algorithm}:{hex_digest}")

    async def close(self) -> None:
        """Release every lock still held (the process is stopping)."""
        for lock in list(self._held):
            await lock.release()

    async def _sweep(self) -> None:
        """Delete rows of holders long dead whose keys nobody took since (at most every
        `_SWEEP_EVERY` seconds, by whichever lock is taken next)."""
        if time.monotonic() - self._swept_at < _SWEEP_EVERY:
            return
        self._swept_at = time.monotonic()
        table = schema.locks
        async with self.engine.begin() as conn:
            cutoff = await database_now(conn) - _SWEEP_AFTER
            await conn.execute(table.delete().where(table.c.expires_at < cutoff))


class LeaseLock:
    """One key's lease; this object is the holder (its token), so two lock objects on one key
    exclude each other even within a process."""

    def __init__(self, locks: LeaseLocks, name: str) -> None:
        self._locks = locks
        self.name = name
        self._token = uuid.uuid4().hex
        self._heartbeat: asyncio.Task[None] | None = None
        self._held_elsewhere_at = -float("inf")  # when `is_free` last found a live holder

    def __repr__(self) -> str:
        return f"LeaseLock({self.name!r})"

    async def try_acquire(self) -> bool:
        if self._heartbeat is not None:
            return True
        locks = self._locks
        table = schema.locks
        async with locks.engine.begin() as conn:
            now = await database_now(conn)
            # Look before writing: waiters poll, and a read takes no row lock.
            row = (
                await conn.execute(
                    select(table.c.holder, table.c.expires_at).where(table.c.name == self.name)
                )
            ).one_or_none()
            if row is not None and row.expires_at >= now and row.holder != self._token:
                return False
            values = {
                "holder": self._token,
                "holder_url": locks.holder_url,
                "expires_at": now + locks.ttl,
            }
            await conn.execute(
                upsert(
                    conn,
                    table,
                    {"name": self.name, **values},
                    values,
                    where=(table.c.expires_at < now) | (table.c.holder == self._token),
                )
            )
            holder: str = (
                await conn.execute(select(table.c.holder).where(table.c.name == self.name))
            ).scalar_one()
        if holder != self._token:
            return False
        locks._held.add(self)
        self._heartbeat = asyncio.create_task(self._renew(), name=f"lease {self.name}")
        with contextlib.suppress(SQLAlchemyError, OSError):
            await locks._sweep()
        return True

    async def acquire(self) -> None:
        # Another replica holds it: there is no event to wait on, so poll.
        while not await self.try_acquire():  # noqa: ASYNC110
            await asyncio.sleep(self._locks.poll)

    async def release(self) -> None:
        if self._heartbeat is None:
            return
        heartbeat, self._heartbeat = self._heartbeat, None
        self._locks._held.discard(self)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        table = schema.locks
        try:
            async with self._locks.engine.begin() as conn:
                await conn.execute(
                    table.delete().where(table.c.name == self.name, table.c.holder == self._token)
                )
        except (SQLAlchemyError, OSError) as exc:
            # The lease lapses by itself within its ttl.
            log.warning("could not release lock %s (it expires by itself): %s", self.name, exc)

    async def is_free(self) -> bool:
        # Followers ask in a tight loop; a live holder seen within one poll interval still
        # holds it as far as they need to know (its lease lasts seconds), so spare the database.
        if time.monotonic() - self._held_elsewhere_at < self._locks.poll:
            return False
        if await self.holder_url() is None:
            return True
        self._held_elsewhere_at = time.monotonic()
        return False

    async def holder_url(self) -> str | None:
        """The advertise URL of the replica holding the lock now; None when nobody does."""
        table = schema.locks
        async with self._locks.engine.connect() as conn:
            now = await database_now(conn)
            row = (
                await conn.execute(
                    select(table.c.holder_url).where(
                        table.c.name == self.name, table.c.expires_at >= now
                    )
                )
            ).one_or_none()
        return None if row is None else str(row.holder_url)

    async def _renew(self) -> None:
        """Push the expiry on every ttl / 4 while held; stop once someone else has the row."""
        locks = self._locks
        table = schema.locks
        while True:
            await asyncio.sleep(locks.ttl / 4)
            try:
                async with locks.engine.begin() as conn:
                    now = await database_now(conn)
                    renewed = await conn.execute(
                        table.update()
                        .where(table.c.name == self.name, table.c.holder == self._token)
                        .values(expires_at=now + locks.ttl)
                    )
            except (SQLAlchemyError, OSError) as exc:
                log.warning("could not renew lock %s; trying again: %s", self.name, exc)
                continue
            if renewed.rowcount == 0:
                log.error(
                    "lost lock %s: its lease lapsed (the database was out of reach for over "
                    "%.0fs) and another holder may have it",
                    self.name,
                    locks.ttl,
                )
                return
