"""Scans of platform images and admins' gate overrides, as rows: one scan per image manifest
digest, queued by whoever asks and claimed by the worker that runs it (scanning/scans/).

A change every worker must see at once (a result, an override) bumps the `scans` revision
counter in the same transaction, so the gate's memory of verdicts is dropped within a poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import bump
from pullthrough.metadata.upserts import upsert

SCANS_REVISION = "scans"

QUEUED = "queued"
SCANNING = "scanning"
DONE = "done"
FAILED = "failed"
STATES = (QUEUED, SCANNING, DONE, FAILED)


@dataclass(frozen=True, slots=True)
class ScanRow:
    digest: str
    repository: str
    state: str  # one of STATES
    reason: str | None
    platform: str | None
    requested_at: float
    started_at: float | None
    finished_at: float | None
    vulndb_revision: int | None
    # Findings as plain JSON objects (scanning/results.py reads them); None before a result.
    findings: list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class Override:
    digest: str
    reason: str
    created_at: float


def _row(row: Any) -> ScanRow:
    return ScanRow(
        digest=row.digest,
        repository=row.repository,
        state=row.state,
        reason=row.reason,
        platform=row.platform,
        requested_at=float(row.requested_at),
        started_at=row.started_at,
        finished_at=row.finished_at,
        vulndb_revision=row.vulndb_revision,
        findings=json.loads(row.findings) if row.findings is not None else None,
    )


class ScanStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, digest: str) -> ScanRow | None:
        query = select(schema.scans).where(schema.scans.c.digest == digest)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row else None

    async def many(self, digests: Sequence[str]) -> dict[str, ScanRow]:
        if not digests:
            return {}
        query = select(schema.scans).where(schema.scans.c.digest.in_(list(digests)))
        async with self._engine.connect() as conn:
            return {row.digest: _row(row) for row in await conn.execute(query)}

    async def queue(self, repository: str, digest: str, *, again: bool = True) -> bool:
        """Queue a scan of `digest`, read through `repository`; False when it is queued or
        scanning already (its result will come). A finished scan is queued again, unless not
        `again`."""
        table = schema.scans
        now = time.time()
        async with self._engine.begin() as conn:
            current = (
                await conn.execute(select(table.c.state).where(table.c.digest == digest))
            ).scalar_one_or_none()
            if current in (QUEUED, SCANNING) or (current is not None and not again):
                return False
            values = {"repository": repository, "state": QUEUED, "requested_at": now}
            await conn.execute(
                upsert(conn, table, {"digest": digest, **values, "reason": None}, values)
            )
        return True

    async def queued(self, limit: int) -> list[ScanRow]:
        """The oldest queued scans, at most `limit`."""
        table = schema.scans
        query = (
            select(table).where(table.c.state == QUEUED).order_by(table.c.requested_at).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_row(row) for row in await conn.execute(query)]

    async def count_queued(self) -> int:
        table = schema.scans
        query = select(func.count()).select_from(table).where(table.c.state == QUEUED)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def claim(self, digest: str, holder: str) -> bool:
        """Move a queued scan to scanning under `holder`; False when someone else did."""
        table = schema.scans
        statement = (
            update(table)
            .where(table.c.digest == digest, table.c.state == QUEUED)
            .values(state=SCANNING, holder=holder, started_at=time.time())
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount == 1)

    async def scanning(self) -> list[ScanRow]:
        query = select(schema.scans).where(schema.scans.c.state == SCANNING)
        async with self._engine.connect() as conn:
            return [_row(row) for row in await conn.execute(query)]

    async def requeue(self, digest: str, holder: str | None) -> None:
        """A scan whose worker is gone goes back to the queue."""
        table = schema.scans
        statement = update(table).where(table.c.digest == digest, table.c.state == SCANNING)
        if holder is not None:
            statement = statement.where(table.c.holder == holder)
        async with self._engine.begin() as conn:
            await conn.execute(statement.values(state=QUEUED, holder=None))

    async def finish(
        self,
        digest: str,
        *,
        platform: str | None,
        findings: list[dict[str, Any]],
        vulndb_revision: int,
    ) -> None:
        table = schema.scans
        values = {
            "state": DONE,
            "reason": None,
            "holder": None,
            "platform": platform,
            "finished_at": time.time(),
            "vulndb_revision": vulndb_revision,
            "findings": json.dumps(findings, sort_keys=True),
        }
        async with self._engine.begin() as conn:
            await conn.execute(update(table).where(table.c.digest == digest).values(**values))
            await bump(conn, SCANS_REVISION)

    async def fail(self, digest: str, reason: str) -> None:
        """The scan failed; findings of an earlier scan are kept (and still count)."""
        table = schema.scans
        values = {"state": FAILED, "reason": reason[:2000], "holder": None}
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.digest == digest)
                .values(finished_at=time.time(), **values)
            )
            await bump(conn, SCANS_REVISION)

    async def older_than(self, vulndb_revision: int) -> list[ScanRow]:
        """Finished scans matched against an older vulnerability database."""
        table = schema.scans
        query = select(table).where(
            table.c.state.in_((DONE, FAILED)),
            (table.c.vulndb_revision < vulndb_revision) | table.c.vulndb_revision.is_(None),
        )
        async with self._engine.connect() as conn:
            return [_row(row) for row in await conn.execute(query)]

    async def forget(self, digest: str) -> None:
        """Drop the scan of an image the cache no longer holds."""
        table = schema.scans
        async with self._engine.begin() as conn:
            await conn.execute(table.delete().where(table.c.digest == digest))

    # -- overrides ---------------------------------------------------------------------------

    async def override(self, digest: str, reason: str) -> Override:
        now = time.time()
        values = {"reason": reason, "created_at": now}
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert(conn, schema.scan_overrides, {"digest": digest, **values}, values)
            )
            await bump(conn, SCANS_REVISION)
        return Override(digest, reason, now)

    async def remove_override(self, digest: str) -> bool:
        table = schema.scan_overrides
        async with self._engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.digest == digest))
            await bump(conn, SCANS_REVISION)
        return bool(result.rowcount)

    async def overrides(self) -> list[Override]:
        table = schema.scan_overrides
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table).order_by(table.c.created_at))
            return [Override(row.digest, row.reason, float(row.created_at)) for row in rows]

    async def overridden(self, digests: Sequence[str]) -> dict[str, Override]:
        if not digests:
            return {}
        table = schema.scan_overrides
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table).where(table.c.digest.in_(list(digests))))
            return {row.digest: Override(row.digest, row.reason, row.created_at) for row in rows}
