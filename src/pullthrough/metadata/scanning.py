"""The registry's scanning configuration (ECR's PutRegistryScanningConfiguration), stored as one
JSON value in `registry_settings`; scanning itself reads it later."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert

_NAME = "scanning"
BASIC = "BASIC"


@dataclass(frozen=True, slots=True)
class RepositoryFilter:
    filter: str  # a repository name pattern, `*` any run of characters
    filter_type: str = "WILDCARD"


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

    def to_json(self) -> dict[str, Any]:
        return {
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
        return ScanningConfiguration(configuration.scan_type, configuration.rules, now)
