"""The benchmark's phases: each starts the servers it needs (one at a time), measures, and
returns plain figures for `bench.report`.

Phase order keeps restarts and disk use low: pullthrough warm (throughput, manifests, memory),
nginx, distribution warm, cold pulls, then the 50-client swarm. Each cache starts empty and its
data is removed when its phase ends.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.rig.proxy import CountingProxy
from tests.rig.registry import UpstreamRegistry
from tests.rig.server import PullthroughServer

from bench.client import ACCEPT
from bench.images import TAG, BenchImage, ImageSet
from bench.measure import (
    MB,
    BenchError,
    PeakRss,
    PullRun,
    Throughput,
    WrkResult,
    ab_head,
    curl_parallel,
    pull,
    wrk,
)
from bench.servers import (
    UPSTREAM_PREFIX,
    DistributionProxy,
    distribution_proxy,
    nginx,
    pullthrough,
    worker_pids,
)

_BLOB_TIMEOUT = 300.0
PT, NGINX, DIST = "pullthrough", "nginx", "distribution proxy"


@dataclass(frozen=True)
class Settings:
    workdir: Path
    workers: int
    wrk_seconds: int
    wrk_connections: int
    wrk_threads: int
    single_repetitions: int
    parallel_repetitions: int
    parallel_clients: int
    cold_repetitions: int
    swarm_clients: int
    pull_parallel: int
    source: Path | None = None  # a `src` dir to run pullthrough from
    s3_single_repetitions: int = 2  # measurement 6: Swift serves ~10x slower than the rest
    s3_parallel_repetitions: int = 1
    replica_clients: int = 12  # measurement 7
    replica_repetitions: int = 1


@dataclass
class ServerFigures:
    """Warm figures for one server (pullthrough, nginx or distribution)."""

    name: str
    fill_mbps: float | None = None  # the cold fill that warmed it, one client
    single: Throughput | None = None
    parallel: Throughput | None = None
    manifests: dict[str, WrkResult] = field(default_factory=dict)


@dataclass
class MemoryFigures:
    """Per-worker RSS of pullthrough, MiB: at rest, and peaks while streaming."""

    reset_worked: bool
    baseline: list[float]
    peaks: dict[str, list[float]] = field(default_factory=dict)  # label → per worker


@dataclass
class ColdFigures:
    """Cold pull of the five-layer image, seconds per repetition, per target."""

    image: BenchImage
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, target: str) -> float:
        return statistics.median(self.seconds[target])


@dataclass
class SwarmFigures:
    """One cache under N concurrent cold pulls, with a counting proxy before its upstream."""

    name: str
    clients: int
    single_seconds: float
    swarm_seconds: float
    slowest_client: float
    first_byte_max: float | None
    blob_gets: dict[str, int]  # digest → upstream GETs during the swarm
    manifest_gets: int
    other_requests: int
    single_blob_gets: int
    warm_swarm_seconds: float | None = None


def _pullthrough(
    s: Settings, upstream_url: str, log_level: str = "warning"
) -> contextlib.AbstractContextManager[PullthroughServer]:
    return pullthrough(
        s.workdir / "pullthrough",
        upstream_url,
        workers=s.workers,
        log_level=log_level,
        source=s.source,
    )


def _blob_url(base: str, repo: str, digest: str) -> str:
    return f"{base}/v2/{repo}/blobs/{digest}"


def _get_manifest(base: str, repo: str, reference: str) -> str:
    """GET a manifest once (warming a cache); its digest."""
    response = httpx.get(
        f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=60.0
    )
    if response.status_code != 200:
        raise BenchError(f"manifest {repo}:{reference} at {base}: HTTP {response.status_code}")
    return response.headers["Docker-Content-Digest"]


MANIFEST_KINDS = ("GET tag", "HEAD tag", "GET digest")


@dataclass(frozen=True)
class _Target:
    """One running server in an interleaved phase: its figures, base URL, repository prefix
    and the processes whose CPU time counts as the server's."""

    figures: ServerFigures
    base: str
    prefix: str
    pids: list[int]


def _manifest_rate(target: _Target, repo: str, kind: str, digest: str, s: Settings) -> None:
    method, by = kind.split()
    reference = TAG if by == "tag" else digest
    url = f"{target.base}/v2/{target.prefix}{repo}/manifests/{reference}"
    if method == "HEAD":
        result = ab_head(
            url,
            accept=ACCEPT,
            seconds=s.wrk_seconds,
            connections=s.wrk_connections,
            server_pids=target.pids,
        )
    else:
        result = wrk(
            url,
            method=method,
            accept=ACCEPT,
            seconds=s.wrk_seconds,
            connections=s.wrk_connections,
            threads=s.wrk_threads,
            scratch=s.workdir / "wrk",
            server_pids=target.pids,
        )
    target.figures.manifests[kind] = result


def _timed_fill(url: str, size: int) -> float:
    started = time.monotonic()
    curl_parallel(url, 1, size, _BLOB_TIMEOUT)
    return size / (time.monotonic() - started) / MB


def warm_blobs(
    upstream: UpstreamRegistry, images: ImageSet, s: Settings, *, blobs: bool, memory: bool
) -> tuple[dict[str, ServerFigures], MemoryFigures | None]:
    """Measurements 1 and 5. pullthrough fills the small then the big blob cold (peak RSS of
    each); distribution fills the big one; then, all three servers up but only one loaded at a
    time, the repetitions alternate between them so that a change in the machine's load hits
    every server alike."""
    big, small = images.big.largest, images.small.largest
    figures = {name: ServerFigures(name) for name in (PT, NGINX, DIST)}
    mem: MemoryFigures | None = None
    with contextlib.ExitStack() as stack:
        pt = stack.enter_context(_pullthrough(s, upstream.url))
        assert pt.pid is not None
        rss = PeakRss(pt.pid)
        urls = {PT: _blob_url(pt.url, f"{UPSTREAM_PREFIX}/{images.big.repo}", big.digest)}
        if memory:
            mem = MemoryFigures(reset_worked=rss.reset(), baseline=rss.current_mib())
            small_url = _blob_url(pt.url, f"{UPSTREAM_PREFIX}/{images.small.repo}", small.digest)
            curl_parallel(small_url, 1, small.size, _BLOB_TIMEOUT)
            mem.peaks[f"cold fill, {small.size // 2**20} MiB blob"] = rss.peak_mib()
            rss.reset()
        figures[PT].fill_mbps = _timed_fill(urls[PT], big.size)
        if mem is not None:
            mem.peaks[f"cold fill, {big.size // 2**20} MiB blob"] = rss.peak_mib()
        if not blobs:
            return {}, mem
        dist = stack.enter_context(distribution_proxy(s.workdir / "distribution", upstream.url))
        urls[DIST] = _blob_url(dist.url, images.big.repo, big.digest)
        figures[DIST].fill_mbps = _timed_fill(urls[DIST], big.size)
        ngx = stack.enter_context(nginx(upstream.storage_dir, s.workdir / "nginx", s.workers))
        urls[NGINX] = _blob_url(ngx.url, images.big.repo, big.digest)
        for url in urls.values():  # once more each: now served from each one's own copy
            curl_parallel(url, 1, big.size, _BLOB_TIMEOUT)
        rss.reset()
        single: dict[str, list[float]] = {name: [] for name in urls}
        parallel: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(s.single_repetitions):
            for name, url in urls.items():
                single[name].append(curl_parallel(url, 1, big.size, _BLOB_TIMEOUT))
        for _ in range(s.parallel_repetitions):
            for name, url in urls.items():
                mbps = curl_parallel(url, s.parallel_clients, big.size, _BLOB_TIMEOUT)
                parallel[name].append(mbps)
        if mem is not None:
            label = f"warm, {big.size // 2**20} MiB blob, 1 then {s.parallel_clients} clients"
            mem.peaks[label] = rss.peak_mib()
    for name in urls:
        figures[name].single = Throughput(1, tuple(single[name]))
        figures[name].parallel = Throughput(s.parallel_clients, tuple(parallel[name]))
    return figures, mem


def manifest_rates(
    upstream: UpstreamRegistry, images: ImageSet, s: Settings
) -> tuple[dict[str, ServerFigures], WrkResult]:
    """Measurement 2: pullthrough and distribution both up, each kind of request measured on
    one then the other; then GET by tag on a pullthrough with its request log on."""
    figures = {PT: ServerFigures(PT), DIST: ServerFigures(DIST)}
    repo = images.cold.repo
    with contextlib.ExitStack() as stack:
        pt = stack.enter_context(_pullthrough(s, upstream.url))
        dist = stack.enter_context(distribution_proxy(s.workdir / "distribution", upstream.url))
        assert pt.pid is not None
        targets = [
            _Target(figures[PT], pt.url, f"{UPSTREAM_PREFIX}/", worker_pids(pt.pid)),
            _Target(figures[DIST], dist.url, "", [dist.pid]),
        ]
        digests = [_get_manifest(t.base, t.prefix + repo, TAG) for t in targets]
        for kind in MANIFEST_KINDS:
            for target, digest in zip(targets, digests, strict=True):
                _manifest_rate(target, repo, kind, digest, s)
    logged = ServerFigures("pullthrough, request log on")
    with _pullthrough(s, upstream.url, log_level="info") as server:
        assert server.pid is not None
        target = _Target(logged, server.url, f"{UPSTREAM_PREFIX}/", worker_pids(server.pid))
        digest = _get_manifest(server.url, f"{UPSTREAM_PREFIX}/{repo}", TAG)
        _manifest_rate(target, repo, "GET tag", digest, s)
    return figures, logged.manifests["GET tag"]


def cold_pulls(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> ColdFigures:
    """Measurement 3: the five-layer image, cold, through each target (a fresh cache each time),
    `pull_parallel` blobs at a time."""
    image = images.cold
    figures = ColdFigures(image)
    n = s.cold_repetitions
    figures.seconds["direct"] = [
        pull(upstream.url, image.repo, TAG, parallel=s.pull_parallel).wall for _ in range(n)
    ]
    figures.seconds["pullthrough"] = []
    for _ in range(n):
        with pullthrough(
            s.workdir / "pullthrough", upstream.url, workers=s.workers, source=s.source
        ) as server:
            run = pull(server.url, f"{UPSTREAM_PREFIX}/{image.repo}", TAG, parallel=s.pull_parallel)
            figures.seconds["pullthrough"].append(run.wall)
    figures.seconds["distribution proxy"] = []
    for _ in range(n):
        with distribution_proxy(s.workdir / "distribution", upstream.url) as proxy:
            run = pull(proxy.url, image.repo, TAG, parallel=s.pull_parallel)
            figures.seconds["distribution proxy"].append(run.wall)
    return figures


def _swarm_counts(counter: CountingProxy, image: BenchImage) -> tuple[dict[str, int], int, int]:
    blob_gets = {b.digest: counter.count("GET", path_contains=b.digest) for b in image.blobs}
    manifest_gets = counter.count("GET", path_contains="/manifests/")
    other = len(counter.requests) - sum(blob_gets.values()) - manifest_gets
    return blob_gets, manifest_gets, other


def swarm(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> list[SwarmFigures]:
    """Measurement 4: one cold pull, then `swarm_clients` concurrent cold pulls, through
    pullthrough and through distribution's proxy, counting upstream requests."""
    image = images.swarm
    results = []
    with CountingProxy(upstream.url) as counter:
        for name in (PT, DIST):
            single, single_counts, _ = _cold_swarm(counter, name, image, 1, s)
            many, counts, warm = _cold_swarm(counter, name, image, s.swarm_clients, s)
            blob_gets, manifest_gets, other = counts
            results.append(
                SwarmFigures(
                    name=name,
                    clients=s.swarm_clients,
                    single_seconds=single.wall,
                    swarm_seconds=many.wall,
                    slowest_client=many.slowest,
                    first_byte_max=max(many.first_bytes, default=None),
                    blob_gets=blob_gets,
                    manifest_gets=manifest_gets,
                    other_requests=other,
                    single_blob_gets=sum(single_counts[0].values()),
                    warm_swarm_seconds=warm,
                )
            )
    return results


def _cold_swarm(
    counter: CountingProxy, name: str, image: BenchImage, clients: int, s: Settings
) -> tuple[PullRun, tuple[dict[str, int], int, int], float | None]:
    """`clients` cold pulls through an empty cache (`name`) whose upstream is the counting
    proxy: the run, the upstream request counts, and for pullthrough a second, warm run."""
    cache: contextlib.AbstractContextManager[PullthroughServer | DistributionProxy]
    if name == PT:
        cache = pullthrough(
            s.workdir / "pullthrough", counter.url, workers=s.workers, source=s.source
        )
        repo = f"{UPSTREAM_PREFIX}/{image.repo}"
    else:
        cache = distribution_proxy(s.workdir / "distribution", counter.url)
        repo = image.repo
    with cache as server:
        counter.reset()
        run = pull(server.url, repo, TAG, clients=clients, parallel=s.pull_parallel)
        # Fills finishing in the background (distribution stores after serving) settle first.
        time.sleep(1.0)
        counts = _swarm_counts(counter, image)
        warm = None
        if name == PT and clients > 1:
            warm = pull(server.url, repo, TAG, clients=clients, parallel=s.pull_parallel).wall
    return run, counts, warm
