"""The gate: in a repository a gate policy names, an image is served only once its scan passed.

The cache asks `Gate.check` before it answers a manifest pull (cache/manifests.py `pull`). In a
repository no gate names, that is one look at the configuration this worker remembers. In a
gated one, an image (every platform image of an index) must have a scan result: a cold image is
queued and the client waits for it up to `gate_wait_seconds` (30 s by default), then is told to
come back (429 TOOMANYREQUESTS with Retry-After). An image with a finding at the policy's
`block_severity` or worse — not allow-listed, and with a fix when `only_fixable` — is refused
(403 DENIED naming the platform, the advisories and their fixed versions), unless an admin
overrode its digest (or its index's). A failed scan refuses too, with its reason.

Verdicts are remembered per digest while the `scans` and `scanning` revision counters stand
still, so a cached image in a gated repository costs no query per pull.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pullthrough.errors import Denied, TooManyRequests
from pullthrough.metadata.inventory import platform_name
from pullthrough.metadata.revisions import Revisions
from pullthrough.metadata.scanning import (
    SCANNING_REVISION,
    GatePolicy,
    ScanningConfiguration,
    ScanningStore,
)
from pullthrough.metadata.scans import FAILED, SCANS_REVISION, ScanRow, ScanStore
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.model import SEVERITIES
from pullthrough.scanning.scans.service import ScanService

# What a client told to come back is told to wait.
RETRY_AFTER_SECONDS = 10
# A refusal names this many findings, and counts the rest.
_NAMED = 6


def blocking(policy: GatePolicy, findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings `policy` refuses an image for."""
    if policy.block_severity is None:
        return []
    limit = SEVERITIES.index(policy.block_severity)
    allowed = set(policy.allowed)
    refused = []
    for finding in findings:
        severity = finding["severity"]
        if severity not in SEVERITIES or SEVERITIES.index(severity) > limit:
            continue
        if allowed & {finding["advisory"], *finding.get("aliases", ())}:
            continue
        if policy.only_fixable and not finding.get("fixed_version"):
            continue
        refused.append(finding)
    return refused


def describe(finding: dict[str, Any]) -> str:
    package = finding["package"]
    fixed = finding.get("fixed_version")
    fix = f"fixed in {fixed}" if fixed else "no fix yet"
    return (
        f"{finding['advisory']} ({finding['severity']}) in {package['name']} "
        f"{package['version']}, {fix}"
    )


@dataclass(frozen=True, slots=True)
class _Platform:
    digest: str
    name: str | None


class Gate:
    def __init__(self, scans: ScanService, revisions: Revisions) -> None:
        self._scans = scans
        self._store: ScanStore = scans.store
        self._configuration_store: ScanningStore = scans.configuration
        self._revisions = revisions
        self._configuration: tuple[int, ScanningConfiguration] | None = None
        # (repository, digest) → the revisions it passed under: policies differ by repository.
        self._passed: dict[tuple[str, str], tuple[int, int]] = {}

    async def configuration(self) -> ScanningConfiguration:
        revision = await self._revisions.value(SCANNING_REVISION)
        if self._configuration is None or self._configuration[0] != revision:
            self._configuration = (revision, await self._configuration_store.get())
        return self._configuration[1]

    async def check(self, repository: str, digest: str, media_type: str, content: bytes) -> None:
        """Return when the manifest `digest` of `repository` may be served; raise Denied when
        the gate refuses it, TooManyRequests when its scan has not finished in time."""
        configuration = await self.configuration()
        policies = configuration.gates_for(repository)
        if not policies:
            return
        key = (
            await self._revisions.value(SCANS_REVISION),
            await self._revisions.value(SCANNING_REVISION),
        )
        if self._passed.get((repository, digest)) == key:
            return
        platforms = self._platforms(digest, media_type, content)
        overridden = await self._store.overridden([digest, *(p.digest for p in platforms)])
        if digest in overridden:
            self._remember(repository, digest, key)
            return
        platforms = [p for p in platforms if p.digest not in overridden]
        rows = await self._store.many([p.digest for p in platforms])
        missing = [p for p in platforms if _needs_scan(rows.get(p.digest))]
        if missing:
            for platform in missing:
                await self._scans.queue(repository, platform.digest)
            waited = await self._scans.wait(
                tuple(p.digest for p in missing), configuration.gate_wait_seconds
            )
            rows.update(waited)
        self._verdict(repository, digest, policies, platforms, rows)
        self._remember(repository, digest, key)

    def _remember(self, repository: str, digest: str, key: tuple[int, int]) -> None:
        if len(self._passed) > 10_000:
            self._passed.clear()
        self._passed[(repository, digest)] = key

    @staticmethod
    def _platforms(digest: str, media_type: str, content: bytes) -> list[_Platform]:
        parsed = parse_manifest(content, media_type)
        if not parsed.is_index:
            return [_Platform(digest, None)]
        return [
            _Platform(child.digest, platform_name(child.platform))
            for child in parsed.children
            if platform_name(child.platform) is not None
        ]

    @staticmethod
    def _verdict(
        repository: str,
        digest: str,
        policies: tuple[GatePolicy, ...],
        platforms: list[_Platform],
        rows: dict[str, ScanRow],
    ) -> None:
        image = f"{repository}@{digest}"
        unfinished = [
            p for p in platforms if rows.get(p.digest) is None or _needs_scan(rows[p.digest])
        ]
        failed = [p for p in unfinished if (row := rows.get(p.digest)) and row.state == FAILED]
        if failed:
            reasons = "; ".join(
                f"{_name(p, rows)}: {rows[p.digest].reason or 'no reason given'}" for p in failed
            )
            raise Denied(
                f"{image} is in a repository the scanning gate guards, and its scan failed "
                f"({reasons}); pull it again to retry the scan, or ask an admin to override the "
                f"digest (pullthrough gate override {image})"
            )
        if unfinished:
            raise TooManyRequests(
                f"{image} is being scanned before its first pull is served (the repository is "
                f"gated by the scanning configuration); try again in {RETRY_AFTER_SECONDS}s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        refusals: list[str] = []
        for platform in platforms:
            findings = rows[platform.digest].findings or []
            refused: dict[str, dict[str, Any]] = {}
            for policy in policies:
                for finding in blocking(policy, findings):
                    refused.setdefault(describe(finding), finding)
            if refused:
                named = list(refused)[:_NAMED]
                more = f" and {len(refused) - _NAMED} more" if len(refused) > _NAMED else ""
                refusals.append(f"{_name(platform, rows)}: {'; '.join(named)}{more}")
        if refusals:
            severities = sorted({p.block_severity for p in policies if p.block_severity})
            raise Denied(
                f"{image} is refused by the scanning gate (block_severity "
                f"{'/'.join(severities)}): {' | '.join(refusals)}. Pull a fixed image, or ask an "
                f"admin to allow the advisory or override the digest"
            )


def _needs_scan(row: ScanRow | None) -> bool:
    """No result to judge by: never scanned, failed without an earlier result, or queued or
    scanning for the first time. A rescan keeps judging by the last result until it is done."""
    if row is None:
        return True
    return row.findings is None


def _name(platform: _Platform, rows: dict[str, ScanRow]) -> str:
    row = rows.get(platform.digest)
    return platform.name or (row.platform if row else None) or platform.digest
