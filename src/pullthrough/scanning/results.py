"""Scan results for people: per platform image, and aggregated over an index (and so a tag), in
a shape close to ECR's DescribeImageScanFindings. Every finding says which platforms it affects.

Findings are kept per platform image as plain JSON objects (`finding_json`); an index's result
is built when asked from its platform images' results, so a rescan of one platform shows at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pullthrough.metadata.inventory import platform_name
from pullthrough.metadata.manifests import ManifestStore
from pullthrough.metadata.scans import DONE, FAILED, QUEUED, SCANNING, ScanRow, ScanStore
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.model import SEVERITIES, Finding

ADVISORY_URL = "https://osv.dev/vulnerability/{}"

# ECR's imageScanStatus.status for each state; an image nobody asked to scan has none.
_STATUS = {QUEUED: "PENDING", SCANNING: "IN_PROGRESS", DONE: "COMPLETE", FAILED: "FAILED"}
NOT_SCANNED = "NOT_SCANNED"


def finding_json(finding: Finding) -> dict[str, Any]:
    """A finding as a scan row keeps it."""
    package = finding.package
    return {
        "advisory": finding.advisory,
        "aliases": list(finding.aliases),
        "severity": finding.severity,
        "score": finding.score,
        "vector": finding.vector,
        "fixed_version": finding.fixed_version,
        "summary": finding.summary,
        "package": {
            "ecosystem": package.ecosystem,
            "name": package.name,
            "version": package.version,
            "purl": package.purl,
            "source_name": package.source_name,
            "source_version": package.source_version,
            "layer": package.layer,
            "path": package.path,
        },
    }


@dataclass(frozen=True, slots=True)
class PlatformScan:
    """One platform image of what was asked about, and its scan (None: never scanned)."""

    digest: str
    platform: str | None  # `linux/arm64` from the index entry or the image config
    scan: ScanRow | None

    @property
    def status(self) -> str:
        return NOT_SCANNED if self.scan is None else _STATUS[self.scan.state]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [] if self.scan is None or self.scan.findings is None else self.scan.findings

    @property
    def name(self) -> str:
        return self.platform or (self.scan.platform if self.scan else None) or "unknown"


def _key(finding: dict[str, Any]) -> tuple[str, ...]:
    package = finding["package"]
    return (
        finding["advisory"],
        package["ecosystem"],
        package["name"],
        package["version"],
        finding.get("fixed_version") or "",
    )


def aggregate(platforms: Sequence[PlatformScan]) -> list[dict[str, Any]]:
    """The findings of every platform image, one per advisory and package version, each with
    the platforms it affects; most severe first, then by advisory and package."""
    merged: dict[tuple[str, ...], dict[str, Any]] = {}
    for platform in platforms:
        for finding in platform.findings:
            entry = merged.setdefault(_key(finding), {**finding, "platforms": []})
            if platform.name not in entry["platforms"]:
                entry["platforms"].append(platform.name)
    for entry in merged.values():
        entry["platforms"].sort()
    return sorted(merged.values(), key=_order)


def _order(finding: dict[str, Any]) -> tuple[int, str, str]:
    severity = finding["severity"]
    rank = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
    return (rank, finding["advisory"], finding["package"]["name"])


def at_or_above(severity: str, findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings at `severity` or more severe."""
    limit = SEVERITIES.index(severity)
    return [
        f
        for f in findings
        if f["severity"] in SEVERITIES and SEVERITIES.index(f["severity"]) <= limit
    ]


def severity_counts(findings: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    return {severity: counts[severity] for severity in SEVERITIES if severity in counts}


def overall_status(platforms: Sequence[PlatformScan]) -> str:
    statuses = {p.status for p in platforms}
    for status in ("FAILED", "IN_PROGRESS", "PENDING"):
        if status in statuses:
            return status
    if statuses == {"COMPLETE"}:
        return "COMPLETE"
    return NOT_SCANNED if statuses <= {NOT_SCANNED} else "IN_PROGRESS"


def _ecr_finding(finding: dict[str, Any]) -> dict[str, Any]:
    package = finding["package"]
    attributes = [
        ("package_name", package["name"]),
        ("package_version", package["version"]),
        ("package_ecosystem", package["ecosystem"]),
        ("package_url", package["purl"]),
        ("source_package", package.get("source_name")),
        ("source_version", package.get("source_version")),
        ("fixed_in", finding.get("fixed_version")),
        ("CVSS_VECTOR", finding.get("vector")),
        ("CVSS_SCORE", None if finding.get("score") is None else f"{finding['score']:g}"),
        ("aliases", ", ".join(finding.get("aliases") or ()) or None),
        ("platforms", ", ".join(finding["platforms"])),
    ]
    return {
        "name": finding["advisory"],
        "description": finding.get("summary") or "",
        "uri": ADVISORY_URL.format(finding["advisory"]),
        "severity": finding["severity"],
        "platforms": finding["platforms"],
        "package_name": package["name"],
        "package_version": package["version"],
        "fixed_in": finding.get("fixed_version"),
        "attributes": [{"key": k, "value": v} for k, v in attributes if v],
    }


def findings_document(
    repository: str,
    digest: str,
    tag: str | None,
    platforms: Sequence[PlatformScan],
    severity: str | None = None,
) -> dict[str, Any]:
    """The result of an image (one platform) or an index (all of them), ECR-shaped; `severity`
    keeps the findings at it or above (the counts are always of all findings)."""
    findings = aggregate(platforms)
    shown = at_or_above(severity, findings) if severity else findings
    completed = [p.scan.finished_at for p in platforms if p.scan and p.scan.finished_at]
    failures = [
        f"{p.name}: {p.scan.reason}"
        for p in platforms
        if p.scan is not None and p.scan.state == FAILED and p.scan.reason
    ]
    status = overall_status(platforms)
    return {
        "repositoryName": repository,
        "imageId": {"imageDigest": digest, "imageTag": tag},
        "imageScanStatus": {
            "status": status,
            "description": "; ".join(failures) or _DESCRIPTION.get(status, ""),
        },
        "imageScanCompletedAt": max(completed) if completed and status == "COMPLETE" else None,
        "platforms": [
            {
                "platform": p.name,
                "imageDigest": p.digest,
                "status": p.status,
                "findingSeverityCounts": severity_counts(p.findings),
            }
            for p in platforms
        ],
        "imageScanFindings": {
            "findings": [_ecr_finding(f) for f in shown],
            "findingSeverityCounts": severity_counts(findings),
        },
    }


_DESCRIPTION = {
    "COMPLETE": "The scan was completed successfully.",
    "IN_PROGRESS": "The image is being scanned.",
    "PENDING": "The image is queued for scanning.",
    NOT_SCANNED: "The image has not been scanned: start a scan with `pullthrough scan`.",
}


async def platform_scans(
    manifests: ManifestStore, scans: ScanStore, repository: str, digest: str
) -> list[PlatformScan] | None:
    """The platform images of cached manifest `digest` of `repository` (itself, or every
    platform of an index) with their scans; None when the repository does not hold it."""
    stored = await manifests.in_repository(repository, digest)
    if stored is None:
        return None
    parsed = parse_manifest(stored.content, stored.media_type)
    if parsed.is_index:
        children = [
            (child.digest, platform_name(child.platform))
            for child in parsed.children
            if platform_name(child.platform) is not None
        ]
    else:
        children = [(digest, None)]
    rows = await scans.many([d for d, _ in children])
    return [PlatformScan(d, name, rows.get(d)) for d, name in children]
