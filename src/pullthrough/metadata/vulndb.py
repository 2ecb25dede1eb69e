"""The vulnerability database's rows: OSV advisories as their JSON text, the index by
(ecosystem base, package name) that matching reads (never the whole table), what each
ecosystem was last read from, and each downloaded archive's validators (ETag, Last-Modified)."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import VULNDB, bump
from pullthrough.metadata.upserts import insert_ignore, upsert, upsert_replacing

# Bound parameters per statement: far below SQLite's and asyncpg's limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class AdvisoryRow:
    id: str
    modified: float
    withdrawn: float | None
    document: str  # the OSV record, JSON
    # (ecosystem base, package name as looked up, ecosystem as the record spells it)
    packages: frozenset[tuple[str, str, str]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: int  # records new or with a newer `modified`
    unchanged: int  # records already held at that `modified` (or a newer one)
    changed: frozenset[tuple[str, str]]  # (ecosystem base, name) whose advisories changed


@dataclass(frozen=True, slots=True)
class ArchiveState:
    name: str  # the ecosystem as the archive's URL spells it: Debian, Alpine, PyPI
    url: str
    etag: str | None
    last_modified: str | None
    records: int
    checked_at: float
    fetched_at: float | None


@dataclass(frozen=True, slots=True)
class EcosystemRow:
    base: str
    records: int
    withdrawn: int
    newest_modified: float | None
    source: str | None
    checked_at: float | None


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class VulnDbStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: Sequence[AdvisoryRow], source: str) -> WriteResult:
        """Store the rows that are new or newer than the copy held, with their index, in one
        transaction; it bumps the `vulndb` revision when anything was written."""
        now = time.time()
        advisories, packages = schema.vulndb_advisories, schema.vulndb_packages
        async with self._engine.begin() as conn:
            held = await _modified(conn, [row.id for row in rows])
            newer: dict[str, AdvisoryRow] = {}
            for row in rows:
                best = newer.get(row.id)
                if row.modified > held.get(row.id, -1.0) and (
                    best is None or row.modified > best.modified
                ):
                    newer[row.id] = row
            if not newer:
                return WriteResult(0, len(rows), frozenset())
            ids = list(newer)
            changed: set[tuple[str, str]] = set()
            for chunk in _chunks(ids):
                old = await conn.execute(
                    select(packages.c.ecosystem_base, packages.c.name).where(
                        packages.c.advisory_id.in_(chunk)
                    )
                )
                changed.update((r.ecosystem_base, r.name) for r in old)
                await conn.execute(delete(packages).where(packages.c.advisory_id.in_(chunk)))
            for row in newer.values():
                await conn.execute(
                    upsert_replacing(
                        conn,
                        advisories,
                        {
                            "id": row.id,
                            "modified": row.modified,
                            "withdrawn": row.withdrawn,
                            "document": row.document,
                            "source": source,
                            "imported_at": now,
                        },
                    )
                )
            index = [
                {"ecosystem_base": b, "name": n, "ecosystem": e, "advisory_id": row.id}
                for row in newer.values()
                for b, n, e in row.packages
            ]
            if index:
                # Ignoring clashes: an import running at the same time may have written them.
                await conn.execute(insert_ignore(conn, packages), index)
            changed.update((b, n) for row in newer.values() for b, n, _e in row.packages)
            await bump(conn, VULNDB)
        return WriteResult(len(newer), len(rows) - len(newer), frozenset(changed))

    async def candidates(self, names: Mapping[str, Collection[str]]) -> dict[str, str]:
        """The documents of the advisories, not withdrawn, that name a package of `names`
        (ecosystem base → names), by id: only those rows are read."""
        advisories, packages = schema.vulndb_advisories, schema.vulndb_packages
        ids: set[str] = set()
        async with self._engine.connect() as conn:
            for base, wanted in names.items():
                for chunk in _chunks(sorted(wanted)):
                    rows = await conn.execute(
                        select(packages.c.advisory_id)
                        .where(packages.c.ecosystem_base == base, packages.c.name.in_(chunk))
                        .distinct()
                    )
                    ids.update(r.advisory_id for r in rows)
            documents: dict[str, str] = {}
            for chunk in _chunks(sorted(ids)):
                rows = await conn.execute(
                    select(advisories.c.id, advisories.c.document).where(
                        advisories.c.id.in_(chunk), advisories.c.withdrawn.is_(None)
                    )
                )
                documents.update((r.id, r.document) for r in rows)
        return documents

    async def note_source(self, bases: Collection[str], source: str) -> None:
        """Remember that `source` (a path or URL) was read for these ecosystems just now."""
        if not bases:
            return
        table, now = schema.vulndb_sources, time.time()
        async with self._engine.begin() as conn:
            for base in sorted(bases):
                await conn.execute(
                    upsert_replacing(
                        conn, table, {"ecosystem_base": base, "source": source, "checked_at": now}
                    )
                )

    async def archive(self, name: str) -> ArchiveState | None:
        table = schema.vulndb_archives
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.name == name))).first()
        if row is None:
            return None
        return ArchiveState(
            name=row.name,
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            records=int(row.records),
            checked_at=row.checked_at,
            fetched_at=row.fetched_at,
        )

    async def archives(self) -> list[ArchiveState]:
        table = schema.vulndb_archives
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table).order_by(table.c.name))
            return [
                ArchiveState(
                    name=row.name,
                    url=row.url,
                    etag=row.etag,
                    last_modified=row.last_modified,
                    records=int(row.records),
                    checked_at=row.checked_at,
                    fetched_at=row.fetched_at,
                )
                for row in rows
            ]

    async def save_archive(self, state: ArchiveState) -> None:
        table = schema.vulndb_archives
        values = {
            "name": state.name,
            "url": state.url,
            "etag": state.etag,
            "last_modified": state.last_modified,
            "records": state.records,
            "checked_at": state.checked_at,
            "fetched_at": state.fetched_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(upsert(conn, table, values, values))

    async def ecosystems(self) -> list[EcosystemRow]:
        """Per ecosystem base: advisories held (and how many withdrawn), the newest
        `modified`, and what it was last read from and when."""
        advisories, packages = schema.vulndb_advisories, schema.vulndb_packages
        sources = schema.vulndb_sources
        per_advisory = (
            select(packages.c.ecosystem_base, packages.c.advisory_id).distinct().subquery()
        )
        counts = (
            select(
                per_advisory.c.ecosystem_base,
                func.count().label("records"),
                func.count(advisories.c.withdrawn).label("withdrawn"),
                func.max(advisories.c.modified).label("newest"),
            )
            .select_from(
                per_advisory.join(advisories, advisories.c.id == per_advisory.c.advisory_id)
            )
            .group_by(per_advisory.c.ecosystem_base)
        )
        async with self._engine.connect() as conn:
            found = {r.ecosystem_base: r for r in await conn.execute(counts)}
            read = {r.ecosystem_base: r for r in await conn.execute(select(sources))}
        rows = []
        for base in sorted(set(found) | set(read)):
            count, source = found.get(base), read.get(base)
            rows.append(
                EcosystemRow(
                    base=base,
                    records=int(count.records) if count else 0,
                    withdrawn=int(count.withdrawn) if count else 0,
                    newest_modified=count.newest if count else None,
                    source=source.source if source else None,
                    checked_at=source.checked_at if source else None,
                )
            )
        return rows


async def _modified(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, float]:
    table = schema.vulndb_advisories
    held: dict[str, float] = {}
    for chunk in _chunks(sorted(set(ids))):
        rows = await conn.execute(select(table.c.id, table.c.modified).where(table.c.id.in_(chunk)))
        held.update((r.id, r.modified) for r in rows)
    return held
