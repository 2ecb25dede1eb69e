"""Measurement 11: what scanning costs. (a) Scan time per fixture image (tests/rig/scan_images:
real dpkg, apk, rpm, Python and npm databases), each image cached first, then scanned on demand
twice: the first scan reads its layers, the second (a rescan) finds their inventories stored.
(b) Pulls while scans run: two pullthroughs up at once, one scanning every image it caches
(`SCAN_ON_PUSH` on `up/*`) and one not; the `cold` image pulled cold through each (the scanning
one scans it while the pull runs), then warm at once while that scan still runs; the servers
alternate which goes first from round to round."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.rig.pusher import RegistryPusher
from tests.rig.registry import UpstreamRegistry
from tests.rig.scan_images import build_scan_images, push_scan_image
from tests.rig.server import PullthroughServer

from bench.images import TAG, ImageSet
from bench.measure import BenchError, pull
from bench.phases import Settings
from bench.servers import UPSTREAM_PREFIX, pullthrough

OSV_FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "osv-fixtures" / "images"
SCAN_ALL = {
    "scan_type": "BASIC",
    "rules": [
        {
            "scan_frequency": "SCAN_ON_PUSH",
            "repository_filters": [{"filter": f"{UPSTREAM_PREFIX}/*"}],
        }
    ],
}
SCAN_TIMEOUT = 600.0
POLL_SECONDS = 0.02
GOAL = 1.1  # pulls while scans run at most 1.1 times the same pulls without scanning (medians)


@dataclass
class ScanTime:
    image: str
    layers: int
    size: int  # bytes of its layers, compressed
    first: float  # seconds from the request until COMPLETE, layers read
    again: float  # the same, inventories stored
    findings: int


@dataclass
class ScanningFigures:
    scans: list[ScanTime] = field(default_factory=list)
    # Pull seconds by kind ("cold", "warm") and server ("off", "on").
    pulls: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cold_scan_seconds: list[float] = field(default_factory=list)  # the `cold` image's scan
    warm_while_scanning: int = 0  # warm pulls that started while the scan was in progress
    warm_pulls: int = 0

    def ratio(self, kind: str) -> float:
        runs = self.pulls.get(kind, {})
        if not runs.get("off") or not runs.get("on"):
            return 0.0
        return statistics.median(runs["on"]) / statistics.median(runs["off"])


def _findings(base: str, repository: str, reference: str) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/api/v1/findings",
        params={"repository": repository, "reference": reference},
        timeout=60.0,
    )
    if response.status_code != 200:
        raise BenchError(f"findings of {repository}:{reference}: HTTP {response.status_code}")
    document: dict[str, Any] = response.json()
    return document


def _status(base: str, repository: str, reference: str) -> str:
    return str(_findings(base, repository, reference)["imageScanStatus"]["status"])


def _scan_and_wait(base: str, repository: str, reference: str) -> float:
    started = time.monotonic()
    response = httpx.post(
        f"{base}/api/v1/scans",
        json={"repository": repository, "reference": reference},
        timeout=60.0,
    )
    if response.status_code != 202:
        raise BenchError(f"scan of {repository}:{reference}: HTTP {response.status_code}")
    return _until_complete(base, repository, reference, started)


def _until_complete(base: str, repository: str, reference: str, started: float) -> float:
    while True:
        status = _status(base, repository, reference)
        if status == "COMPLETE":
            return time.monotonic() - started
        if status == "FAILED" or time.monotonic() - started > SCAN_TIMEOUT:
            raise BenchError(f"scan of {repository}:{reference}: {status}")
        time.sleep(POLL_SECONDS)


def _configure(server: PullthroughServer, scanning: dict[str, Any]) -> None:
    server.command("vulndb", "import", str(OSV_FIXTURES))
    response = httpx.put(f"{server.url}/api/v1/scanning", json=scanning, timeout=60.0)
    if response.status_code != 200:
        raise BenchError(f"scanning configuration: HTTP {response.status_code}")


def scan_times(upstream: UpstreamRegistry, s: Settings) -> list[ScanTime]:
    fixtures = build_scan_images(s.workdir / "scan-images")
    chosen = {
        "debian": fixtures.debian,
        "distroless": fixtures.distroless,
        "alpine": fixtures.alpine,
        "rocky": fixtures.rocky,
        "fedora": fixtures.fedora,
    }
    with RegistryPusher(upstream.url) as pusher:
        pushed = {
            name: push_scan_image(pusher, f"bench-scan/{name}", "1", image)
            for name, image in chosen.items()
        }
    times = []
    with pullthrough(
        s.workdir / "pullthrough-scan-times", upstream.url, workers=s.workers, source=s.source
    ) as server:
        _configure(server, {"scan_type": "BASIC", "rules": []})  # on demand only
        for name, image in pushed.items():
            repository = f"{UPSTREAM_PREFIX}/{image.repo}"
            pull(server.url, repository, "1")  # cached first: the scan reads stored layers
            first = _scan_and_wait(server.url, repository, "1")
            again = _scan_and_wait(server.url, repository, "1")
            document = _findings(server.url, repository, "1")
            layers = chosen[name].layers
            times.append(
                ScanTime(
                    image=name,
                    layers=len(layers),
                    size=sum(layer.size for layer in layers),
                    first=first,
                    again=again,
                    findings=len(document["imageScanFindings"]["findings"]),
                )
            )
    return times


def pulls_while_scanning(
    upstream: UpstreamRegistry, images: ImageSet, s: Settings, figures: ScanningFigures
) -> None:
    image = images.cold
    repository = f"{UPSTREAM_PREFIX}/{image.repo}"
    for round_number in range(s.cold_repetitions):
        with contextlib.ExitStack() as stack:
            servers = {}
            for label, scanning in (("off", {"scan_type": "BASIC", "rules": []}), ("on", SCAN_ALL)):
                server = stack.enter_context(
                    pullthrough(
                        s.workdir / f"pullthrough-scanning-{label}",
                        upstream.url,
                        workers=s.workers,
                        source=s.source,
                    )
                )
                _configure(server, scanning)
                servers[label] = server.url
            order = ["off", "on"] if round_number % 2 == 0 else ["on", "off"]
            for label in order:
                base = servers[label]
                started = time.monotonic()
                cold = pull(base, repository, TAG, parallel=s.pull_parallel)
                before = _status(base, repository, TAG)
                warm = pull(base, repository, TAG, parallel=s.pull_parallel)
                # A scan ran during the warm pull if it was in progress at its start or its
                # end (the first scan, or a rescan after the database import).
                after = _status(base, repository, TAG)
                scanning_now = label == "on" and not before == after == "COMPLETE"
                figures.pulls.setdefault("cold", {}).setdefault(label, []).append(cold.wall)
                figures.pulls.setdefault("warm", {}).setdefault(label, []).append(warm.wall)
                if label == "on":
                    figures.warm_pulls += 1
                    figures.warm_while_scanning += int(scanning_now)
                    figures.cold_scan_seconds.append(
                        _until_complete(base, repository, TAG, started)
                    )


def scanning_cost(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> ScanningFigures:
    figures = ScanningFigures(scans=scan_times(upstream, s))
    pulls_while_scanning(upstream, images, s, figures)
    return figures


def section(figures: ScanningFigures | None) -> list[str]:
    """The report's lines for measurement 11."""
    if figures is None:
        return []
    lines = [
        "## 11. Scanning",
        "",
        "Scan time per fixture image (`tests/rig/scan_images.py`), the image cached first, then "
        "`POST /api/v1/scans` and polling until `COMPLETE`: the first scan reads the layers, "
        "the second finds their inventories stored (what a rescan after a database update "
        "costs):",
        "",
        "| image | layers | size | first scan | rescan | findings |",
        "|---|---|---|---|---|---|",
    ]
    for scan in figures.scans:
        lines.append(
            f"| {scan.image} | {scan.layers} | {scan.size / 1024:.0f} KiB | "
            f"{scan.first * 1000:.0f} ms | {scan.again * 1000:.0f} ms | {scan.findings} |"
        )
    if figures.pulls:
        lines += [
            "",
            "Pulls of the `cold` image (`bench/client.py`, layers 3 at a time) through a "
            "pullthrough that scans every image it caches and one that does not (up at once, "
            "which goes first alternating): cold, then warm at once while the first one's scan "
            f"runs ({figures.warm_while_scanning} of {figures.warm_pulls} warm pulls had the "
            "scan in progress at their start or end):",
            "",
            "| pull | scanning off (s) | scanning on (s) | on / off (medians) |",
            "|---|---|---|---|",
        ]
        for kind in ("cold", "warm"):
            runs = figures.pulls.get(kind, {})
            off = ", ".join(f"{x:.2f}" for x in runs.get("off", []))
            on = ", ".join(f"{x:.2f}" for x in runs.get("on", []))
            lines.append(f"| {kind} | {off} | {on} | {figures.ratio(kind):.2f}\u00d7 |")
        if figures.cold_scan_seconds:
            lines += [
                "",
                f"- The `cold` image's scan was complete "
                f"{statistics.median(figures.cold_scan_seconds):.1f} s (median) after its cold "
                "pull started.",
            ]
        for kind in ("cold", "warm"):
            lines.append(
                f"- {kind} pulls, scanning on / off: **{figures.ratio(kind):.2f}\u00d7** "
                f"(goal ≤ {GOAL}\u00d7)."
            )
    return [*lines, ""]
