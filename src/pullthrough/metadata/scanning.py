"""The registry's scanning configuration (ECR's PutRegistryScanningConfiguration) and the gate's
policies, stored as one JSON value in `registry_settings` (keys a stored value lacks take their
defaults); scanning/scans/ and scanning/gate.py read it."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import bump
from pullthrough.metadata.upserts import upsert

_NAME = "scanning"
BASIC = "BASIC"
# Bumped with every change of the configuration, so every worker's gate rereads it.
SCANNING_REVISION = "scanning"
# How long a client's pull of a cold image in a gated repository waits for its scan before it
# is told to come back (429 with Retry-After).
GATE_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RepositoryFilter:
    filter: str  # a repository name pattern, `*` any run of characters
    filter_type: str = "WILDCARD"

    def matches(self, repository: str) -> bool:
        """ECR's WILDCARD filter: the whole name, `*` standing for any run of characters."""
        pattern = ".*".join(re.escape(part) for part in self.filter.split("*"))
        return re.fullmatch(pattern, repository) is not None


def matches_any(filters: tuple[RepositoryFilter, ...], repository: str) -> bool:
    return any(f.matches(repository) for f in filters)


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """In repositories the filters name, refuse an image with a finding at `block_severity` or
    worse (none: nothing is refused), unless its advisory (or an alias) is in `allowed`; with
    `only_fixable`, only findings that have a fixed version count."""

    repository_filters: tuple[RepositoryFilter, ...]
    block_severity: str | None = None  # CRITICAL, HIGH, MEDIUM or LOW
    allowed: tuple[str, ...] = ()
    only_fixable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "repository_filters": [
                {"filter": f.filter, "filter_type": f.filter_type} for f in self.repository_filters
            ],
            "block_severity": self.block_severity,
            "allowed": list(self.allowed),
            "only_fixable": self.only_fixable,
        }

    @classmethod
    def from_json(cls, document: Any) -> GatePolicy:
        return cls(
            repository_filters=tuple(
                RepositoryFilter(str(f["filter"]), str(f.get("filter_type", "WILDCARD")))
                for f in document["repository_filters"]
            ),
            block_severity=document.get("block_severity"),
            allowed=tuple(str(a) for a in document.get("allowed", ())),
            only_fixable=bool(document.get("only_fixable", False)),
        )


@dataclass(frozen=True, slots=True)
class ScanningRule:
    scan_frequency: str  # SCAN_ON_PUSH (here: on first cache), CONTINUOUS_SCAN or MANUAL
    repository_filters: tuple[RepositoryFilter, ...]


@dataclass(frozen=True, slots=True)
class ScanningConfiguration:
    """What is scanned and when; the default (never set) scans nothing automatically."""

    scan_type: str = BASIC
    rules: tuple[ScanningRule, ...] = ()
    updated_at: float | None = None
    gates: tuple[GatePolicy, ...] = ()
    gate_wait_seconds: float = GATE_WAIT_SECONDS

    def scans_on_first_cache(self, repository: str) -> bool:
        """Whether an image newly cached in `repository` is scanned at once: a scan-on-push
        (here: on first cache) or continuous rule names it, or a gate does."""
        return any(
            rule.scan_frequency != "MANUAL" and matches_any(rule.repository_filters, repository)
            for rule in self.rules
        ) or bool(self.gates_for(repository))

    def gates_for(self, repository: str) -> tuple[GatePolicy, ...]:
        """The gate policies whose filters name `repository`."""
        return tuple(
            gate for gate in self.gates if matches_any(gate.repository_filters, repository)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "gates": [gate.to_json() for gate in self.gates],
            "gate_wait_seconds": self.gate_wait_seconds,
            "scan_type": self.scan_type,
            "rules": [
                {
                    "scan_frequency": rule.scan_frequency,
                    "repository_filters": [
                        {"filter": f.filter, "filter_type": f.filter_type}
                        for f in rule.repository_filters
                    ],
                }
                for rule in self.rules
            ],
        }

    @classmethod
    def from_json(cls, document: Any, updated_at: float | None) -> ScanningConfiguration:
        return cls(
            scan_type=str(document["scan_type"]),
            rules=tuple(
                ScanningRule(
                    scan_frequency=str(rule["scan_frequency"]),
                    repository_filters=tuple(
                        RepositoryFilter(str(f["filter"]), str(f["filter_type"]))
                        for f in rule["repository_filters"]
                    ),
                )
                for rule in document["rules"]
            ),
            updated_at=updated_at,
            gates=tuple(GatePolicy.from_json(gate) for gate in document.get("gates", ())),
            gate_wait_seconds=float(document.get("gate_wait_seconds", GATE_WAIT_SECONDS)),
        )


class ScanningStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self) -> ScanningConfiguration:
        table = schema.registry_settings
        query = select(table.c.value, table.c.updated_at).where(table.c.name == _NAME)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return ScanningConfiguration()
        return ScanningConfiguration.from_json(json.loads(row.value), float(row.updated_at))

    async def put(self, configuration: ScanningConfiguration) -> ScanningConfiguration:
        """Replace the configuration; the stored one, with its new `updated_at`."""
        now = time.time()
        value = json.dumps(configuration.to_json(), sort_keys=True)
        async with self._engine.begin() as conn:
            await conn.execute(
                upsert(
                    conn,
                    schema.registry_settings,
                    {"name": _NAME, "value": value, "updated_at": now},
                    {"value": value, "updated_at": now},
                )
            )
            await bump(conn, SCANNING_REVISION)
        return dataclasses.replace(configuration, updated_at=now)
