"""An image's vulnerability findings on the dashboard: its platform images' scans aggregated
(`scanning/results.py`), each finding with the platforms it affects, filtered by severity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pullthrough.api.ui.tables import Column
from pullthrough.metadata.scans import ScanStore
from pullthrough.scanning.model import SEVERITIES
from pullthrough.scanning.results import (
    ADVISORY_URL,
    PlatformScan,
    aggregate,
    at_or_above,
    overall_status,
    severity_counts,
)

Finding = dict[str, Any]


@dataclass(frozen=True)
class FindingsView:
    status: str  # ECR's scan status over the platforms: COMPLETE, PENDING, NOT_SCANNED, ...
    platforms: Sequence[PlatformScan]
    counts: dict[str, int]  # of every finding, whatever the filter
    shown: list[Finding]
    total: int
    severity: str  # the filter: this severity or worse; "" for all

    def url(self, finding: Finding) -> str:
        return ADVISORY_URL.format(finding["advisory"])


def severity_filter(text: str | None) -> str:
    wanted = (text or "").upper()
    return wanted if wanted in SEVERITIES else ""


async def findings_view(
    scans: ScanStore, platforms: Sequence[tuple[str, str | None]], severity: str
) -> FindingsView:
    """`platforms`: the image's platform manifests as (digest, platform name), the image itself
    for a single-platform one."""
    rows = await scans.many([digest for digest, _ in platforms])
    scanned = [PlatformScan(digest, name, rows.get(digest)) for digest, name in platforms]
    found = aggregate(scanned)
    return FindingsView(
        status=overall_status(scanned),
        platforms=scanned,
        counts=severity_counts(found),
        shown=at_or_above(severity, found) if severity else found,
        total=len(found),
        severity=severity,
    )


FINDING_COLUMNS: list[Column[Finding]] = [
    Column("advisory", "Advisory", lambda f: f["advisory"]),
    Column("severity", "Severity", lambda f: f["severity"]),
    Column("score", "Score", lambda f: f.get("score")),
    Column("package", "Package", lambda f: f["package"]["name"]),
    Column("version", "Version", lambda f: f["package"]["version"]),
    Column("fixed_version", "Fixed in", lambda f: f.get("fixed_version")),
    Column("platforms", "Platforms", lambda f: " ".join(f["platforms"])),
    Column("summary", "Summary", lambda f: f.get("summary")),
]
