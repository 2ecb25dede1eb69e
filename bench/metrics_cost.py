"""Measurement 10: what the Prometheus metrics cost. Two pullthroughs up at once, one with
`metrics: true` (the default) and one with `metrics: false`, both with the request log off; a
warm manifest GET by tag and a warm blob GET, each with wrk, the runs alternating between the
two (and which goes first) so that a change in the machine's load hits both alike."""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field

import httpx
from tests.rig.registry import UpstreamRegistry

from bench.client import ACCEPT
from bench.images import TAG, ImageSet
from bench.measure import BenchError, WrkResult, wrk
from bench.phases import Settings
from bench.servers import UPSTREAM_PREFIX, pullthrough, worker_pids

# A blob request moves megabytes: fewer connections than for manifests keep it about serving,
# not about queueing on two cores.
BLOB_CONNECTIONS = 8
GOAL = 0.95  # metrics on ≥ 95 % of metrics off


@dataclass
class MetricsFigures:
    """wrk runs per request kind ("manifest GET tag", "blob GET") with metrics off and on."""

    blob_size: int = 0
    off: dict[str, list[WrkResult]] = field(default_factory=dict)
    on: dict[str, list[WrkResult]] = field(default_factory=dict)

    def ratio(self, kind: str) -> float:
        off = [r.requests_per_second for r in self.off.get(kind, [])]
        on = [r.requests_per_second for r in self.on.get(kind, [])]
        if not off or not on:
            return 0.0
        return statistics.median(on) / statistics.median(off)

    @property
    def kinds(self) -> list[str]:
        return [kind for kind in self.off if self.on.get(kind)]


def metrics_cost(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> MetricsFigures:
    image = images.swarm
    blob = image.largest
    repo = f"{UPSTREAM_PREFIX}/{image.repo}"
    figures = MetricsFigures(blob_size=blob.size)
    with contextlib.ExitStack() as stack:
        servers = {}
        for label, enabled in (("off", False), ("on", True)):
            server = stack.enter_context(
                pullthrough(
                    s.workdir / f"pullthrough-metrics-{label}",
                    upstream.url,
                    workers=s.workers,
                    source=s.source,
                    config={"metrics": enabled},
                )
            )
            assert server.pid is not None
            _warm(server.url, repo, blob.digest, blob.size)
            servers[label] = (server.url, worker_pids(server.pid))
        urls = {
            "manifest GET tag": (f"/v2/{repo}/manifests/{TAG}", s.wrk_connections),
            "blob GET": (f"/v2/{repo}/blobs/{blob.digest}", BLOB_CONNECTIONS),
        }
        for round_number in range(s.log_rounds):
            # Off first, then on first, and so on: whichever runs second in a round is not
            # always the same one.
            order = [("off", figures.off), ("on", figures.on)]
            if round_number % 2:
                order.reverse()
            for kind, (path, connections) in urls.items():
                for label, runs in order:
                    base, pids = servers[label]
                    result = wrk(
                        base + path,
                        method="GET",
                        accept=ACCEPT,
                        seconds=s.wrk_seconds,
                        connections=connections,
                        threads=s.wrk_threads,
                        scratch=s.workdir / "wrk",
                        server_pids=pids,
                    )
                    runs.setdefault(kind, []).append(result)
    return figures


def _warm(base: str, repo: str, digest: str, size: int) -> None:
    """The manifest and the blob cached (the blob's fill committed) before any run."""
    manifest = httpx.get(f"{base}/v2/{repo}/manifests/{TAG}", headers={"Accept": ACCEPT})
    if manifest.status_code != 200:
        raise BenchError(f"manifest {repo}:{TAG} at {base}: HTTP {manifest.status_code}")
    for _ in range(50):
        response = httpx.get(f"{base}/v2/{repo}/blobs/{digest}", timeout=120.0)
        if response.status_code != 200 or len(response.content) != size:
            raise BenchError(f"blob {digest} at {base}: HTTP {response.status_code}")
        if response.headers.get("X-Pullthrough-Cache") == "hit":
            return
    raise BenchError(f"blob {digest} at {base} never became a hit")


def _cpu_per_request(runs: list[WrkResult]) -> float:
    """Seconds of server CPU per request, the median over the runs: less moved by what else
    the machine runs than the request rate."""
    return statistics.median(
        x.server_cpu_percent / 100 / x.requests_per_second for x in runs if x.requests_per_second
    )


def section(figures: MetricsFigures | None) -> list[str]:
    """The report's lines for measurement 10."""
    if figures is None or not figures.kinds:
        return []
    lines = [
        "## 10. Metrics on vs off",
        "",
        "Two pullthroughs up at once, `metrics: true` (the default) and `metrics: false`, "
        "request log off in both; wrk GETs of a cached manifest by tag and of a cached "
        f"{figures.blob_size / 2**20:.0f} MiB blob ({BLOB_CONNECTIONS} connections), the runs "
        "alternating off, on, then on, off, and so on:",
        "",
        "| request | metrics | req/s per run | median | server CPU (median) | server CPU per "
        "request (median) |",
        "|---|---|---|---|---|---|",
    ]
    for kind in figures.kinds:
        for label, runs in (("off", figures.off[kind]), ("on", figures.on[kind])):
            rates = [x.requests_per_second for x in runs]
            cpu = statistics.median(x.server_cpu_percent for x in runs)
            lines.append(
                f"| {kind} | {label} | {', '.join(f'{x:,.0f}' for x in rates)} | "
                f"{statistics.median(rates):,.0f} | {cpu:.0f}% | "
                f"{_cpu_per_request(runs) * 1e6:.0f} µs |"
            )
    lines.append("")
    for kind in figures.kinds:
        lines.append(
            f"- {kind}, metrics on / off: **{figures.ratio(kind):.3f}\u00d7** "
            f"(goal ≥ {GOAL}\u00d7)."
        )
    return [*lines, ""]
