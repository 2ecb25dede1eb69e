"""The local vulnerability database: OSV advisories imported from files or synced from OSV's
archives into the metadata database, and the findings of an image's inventory against them."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata.vulndb import AdvisoryRow, ArchiveState, VulnDbStore
from pullthrough.scanning import matching
from pullthrough.scanning.matching.osv import Advisory, parse_record
from pullthrough.scanning.model import Finding, Inventory
from pullthrough.scanning.vulndb.archives import (
    ArchiveError,
    Fetched,
    archive_url,
    fetch,
)
from pullthrough.scanning.vulndb.records import Invalid, Read, Record, next_batch, read_records

# Records per transaction: each commits on its own, so a long import never holds the database's
# write lock for long (a server keeps writing while it runs).
BATCH = 500
SYNC_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_read=120)


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    records: int  # read, valid
    written: int  # new, or newer than the copy held
    unchanged: int
    invalid: tuple[str, ...]  # "<where>: <problem>", one per record that could not be read
    ecosystems: frozenset[str]  # the ecosystem bases the records name
    changed: frozenset[tuple[str, str]]  # (ecosystem base, package name)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "written": self.written,
            "unchanged": self.unchanged,
            "invalid": list(self.invalid),
            "ecosystems": sorted(self.ecosystems),
            "changed_packages": [list(pair) for pair in sorted(self.changed)],
        }


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    ecosystem: str
    url: str
    outcome: str  # "unchanged" (304), "updated" (downloaded and imported), "failed"
    message: str = ""
    report: ImportReport | None = None


@dataclass(frozen=True, slots=True)
class SyncReport:
    archives: tuple[ArchiveOutcome, ...]
    changed: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def written(self) -> int:
        return sum(a.report.written for a in self.archives if a.report is not None)

    @property
    def unchanged(self) -> int:
        return sum(a.report.unchanged for a in self.archives if a.report is not None)

    @property
    def failed(self) -> tuple[ArchiveOutcome, ...]:
        return tuple(a for a in self.archives if a.outcome == "failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "archives": [
                {
                    "ecosystem": a.ecosystem,
                    "url": a.url,
                    "outcome": a.outcome,
                    "message": a.message,
                    "written": a.report.written if a.report else 0,
                    "unchanged": a.report.unchanged if a.report else 0,
                    "invalid": len(a.report.invalid) if a.report else 0,
                }
                for a in self.archives
            ],
            "written": self.written,
            "changed_packages": [list(pair) for pair in sorted(self.changed)],
        }


@dataclass(frozen=True, slots=True)
class EcosystemStatus:
    ecosystem: str  # the base: Debian, Alpine, PyPI
    records: int
    withdrawn: int
    newest_modified: float | None
    source: str | None  # the path or URL last read
    checked_at: float | None  # when last imported or synced


@dataclass(frozen=True, slots=True)
class VulnDbStatus:
    ecosystems: tuple[EcosystemStatus, ...]
    archives: tuple[ArchiveState, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ecosystems": [
                {
                    "ecosystem": e.ecosystem,
                    "records": e.records,
                    "withdrawn": e.withdrawn,
                    "newest_modified": iso(e.newest_modified),
                    "source": e.source,
                    "checked_at": iso(e.checked_at),
                }
                for e in self.ecosystems
            ],
            "archives": [
                {
                    "ecosystem": a.name,
                    "url": a.url,
                    "etag": a.etag,
                    "last_modified": a.last_modified,
                    "records": a.records,
                    "checked_at": iso(a.checked_at),
                    "fetched_at": iso(a.fetched_at),
                }
                for a in self.archives
            ],
        }


def _row(record: Record) -> AdvisoryRow:
    advisory = record.advisory
    return AdvisoryRow(
        id=advisory.id,
        modified=advisory.modified,
        withdrawn=advisory.withdrawn,
        document=record.document,
        packages=advisory.keys(),
    )


class VulnerabilityDatabase:
    """OSV advisories in the metadata database. Every import or sync that changes anything
    bumps the `vulndb` revision in the same transaction, and reports the (ecosystem base,
    package name) pairs whose advisories changed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._store = VulnDbStore(engine)

    async def findings(self, inventory: Inventory) -> list[Finding]:
        """The advisories affecting `inventory`'s packages; only their rows are read."""
        found = matching.lookups(inventory)
        documents = await self._store.candidates(matching.names_by_base(found))
        advisories: dict[str, Advisory] = {}
        for ident, text in documents.items():
            advisories[ident] = parse_record(json.loads(text))
        return matching.match(found, advisories)

    async def import_path(self, path: Path) -> ImportReport:
        """Import a JSON file (a record or a list of them), a directory tree, or a zip."""
        if not await asyncio.to_thread(path.exists):
            raise FileNotFoundError(f"{path}: no such file or directory")
        source = await asyncio.to_thread(path.absolute)
        return await self._import(read_records(path), str(source))

    async def _import(self, records: Iterator[Read], source: str) -> ImportReport:
        count = written = unchanged = 0
        invalid: list[str] = []
        bases: set[str] = set()
        changed: set[tuple[str, str]] = set()
        while batch := await asyncio.to_thread(next_batch, records, BATCH):
            valid = [item for item in batch if isinstance(item, Record)]
            invalid.extend(f"{i.where}: {i.problem}" for i in batch if isinstance(i, Invalid))
            rows = [_row(item) for item in valid]
            count += len(rows)
            bases.update(base for row in rows for base, _name, _eco in row.packages)
            if rows:
                result = await self._store.write(rows, source)
                written += result.written
                unchanged += result.unchanged
                changed.update(result.changed)
        await self._store.note_source(bases, source)
        return ImportReport(
            source, count, written, unchanged, tuple(invalid), frozenset(bases), frozenset(changed)
        )

    async def sync(self, base_url: str, ecosystems: Sequence[str]) -> SyncReport:
        """Download each ecosystem's `all.zip` under `base_url` unless it is unchanged since
        the last sync (ETag / Last-Modified), and import the records whose `modified` moved."""
        outcomes: list[ArchiveOutcome] = []
        changed: set[tuple[str, str]] = set()
        async with aiohttp.ClientSession(timeout=SYNC_TIMEOUT) as session:
            for ecosystem in ecosystems:
                outcome = await self._sync_one(session, base_url, ecosystem)
                outcomes.append(outcome)
                if outcome.report is not None:
                    changed.update(outcome.report.changed)
        return SyncReport(tuple(outcomes), frozenset(changed))

    async def _sync_one(
        self, session: aiohttp.ClientSession, base_url: str, ecosystem: str
    ) -> ArchiveOutcome:
        url = archive_url(base_url, ecosystem)
        held = await self._store.archive(ecosystem)
        # Validators apply to the URL they came from: another base URL downloads afresh.
        same = held is not None and held.url == url
        etag = held.etag if held is not None and same else None
        last_modified = held.last_modified if held is not None and same else None
        now = time.time()
        with tempfile.TemporaryDirectory(prefix="pullthrough-osv-") as scratch:
            try:
                answer = await fetch(session, url, etag, last_modified, Path(scratch) / "all.zip")
            except ArchiveError as exc:
                return ArchiveOutcome(ecosystem, url, "failed", str(exc))
            if not isinstance(answer, Fetched):
                if held is None:
                    message = f"GET {url} answered 304 to a request without validators"
                    return ArchiveOutcome(ecosystem, url, "failed", message)
                await self._store.save_archive(
                    ArchiveState(
                        ecosystem,
                        url,
                        held.etag,
                        held.last_modified,
                        held.records,
                        now,
                        held.fetched_at,
                    )
                )
                await self._store.note_source({ecosystem.partition(":")[0]}, url)
                return ArchiveOutcome(ecosystem, url, "unchanged")
            if not await asyncio.to_thread(zipfile.is_zipfile, answer.path):
                return ArchiveOutcome(ecosystem, url, "failed", f"{url} is not a zip archive")
            report = await self._import(read_records(answer.path, url), url)
        await self._store.save_archive(
            ArchiveState(
                ecosystem, url, answer.etag, answer.last_modified, report.records, now, now
            )
        )
        return ArchiveOutcome(ecosystem, url, "updated", report=report)

    async def status(self) -> VulnDbStatus:
        rows = await self._store.ecosystems()
        archives = await self._store.archives()
        return VulnDbStatus(
            tuple(
                EcosystemStatus(
                    r.base, r.records, r.withdrawn, r.newest_modified, r.source, r.checked_at
                )
                for r in rows
            ),
            tuple(archives),
        )
