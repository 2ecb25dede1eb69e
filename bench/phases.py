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
    CpuSplit,
    PeakRss,
    PullRun,
    Throughput,
    TimedGet,
    TreeMemory,
    TreePeak,
    WrkResult,
    ab_head,
    curl_cpu,
    curl_parallel,
    pull,
    sha256_cpu_seconds,
    tree_memory,
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
    cold_blob_repetitions: int = 5  # measurement 8: each from an empty cache
    log_rounds: int = 5  # measurements 2 and 10: wrk runs alternating off, on, on, off, …
    slow_repetitions: int = 3  # measurement 9: cold pulls per target
    slow_delay: float = 0.05  # seconds added to every request through the slow upstream
    slow_rate: int = 75 * MB  # bytes/s per upstream response (one connection)


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
    # The whole process tree (pullthrough: parent + workers): server → at rest, peak in phase.
    at_rest: dict[str, TreeMemory] = field(default_factory=dict)
    under_load: dict[str, TreeMemory] = field(default_factory=dict)


@dataclass
class LogFigures:
    """Manifest GET by tag on two pullthroughs up at once, one with the request log on (its
    default, `info`) and one with it off (`warning`), wrk runs alternating between them."""

    off: list[WrkResult] = field(default_factory=list)
    on: list[WrkResult] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        off = statistics.median(r.requests_per_second for r in self.off)
        on = statistics.median(r.requests_per_second for r in self.on)
        return on / off if off else 0.0


@dataclass
class ColdBlobFigures:
    """Measurement 8: the big blob GET through an empty cache, one curl per run."""

    size: int
    runs: dict[str, list[TimedGet]] = field(default_factory=dict)
    # What each download cost in CPU, per target ("direct": curl from the upstream itself).
    cpu: dict[str, list[CpuSplit]] = field(default_factory=dict)
    sha256_seconds: float = 0.0  # one core hashing `size` bytes in memory

    def median_cpu(self, target: str) -> CpuSplit:
        splits = self.cpu[target]
        return CpuSplit(
            cache=statistics.median(c.cache for c in splits),
            upstream=statistics.median(c.upstream for c in splits),
            client=statistics.median(c.client for c in splits),
        )

    def floor_cpu(self) -> float:
        """The least CPU a download through any cache that hashes every byte costs: what a
        direct download costs the upstream and the client; the cache receiving the bytes (at
        least what curl pays doing only that) and sending them (at least what the upstream
        pays, sending from its page cache with sendfile); and sha256 of them. Nothing for
        storing them."""
        direct = self.median_cpu("direct")
        return 2 * direct.total + self.sha256_seconds

    def floor_seconds(self, cpus: int) -> float:
        """`floor_cpu` spread perfectly over `cpus` cores."""
        return self.floor_cpu() / cpus

    def median_seconds(self, target: str) -> float:
        return statistics.median(g.total for g in self.runs[target])

    def median_mbps(self, target: str) -> float:
        return self.size / self.median_seconds(target) / MB

    def median_body_mbps(self, target: str) -> float:
        return statistics.median(g.body_mbps for g in self.runs[target])


@dataclass
class SlowFigures:
    """Measurement 9: cold pulls of the 24-layer image through a slow upstream proxy."""

    image: BenchImage
    delay: float
    rate: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    upstream_requests: dict[str, int] = field(default_factory=dict)  # last run's, per target
    max_blob_gets: dict[str, int] = field(default_factory=dict)  # last run's, per target

    def median(self, target: str) -> float:
        return statistics.median(self.seconds[target])


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
        peaks: dict[str, TreePeak] = {}
        if memory:
            time.sleep(1.0)  # settled after the start
            mem = MemoryFigures(reset_worked=rss.reset(), baseline=rss.current_mib())
            mem.at_rest[PT] = tree_memory(pt.pid)
            peaks[PT] = stack.enter_context(TreePeak(pt.pid))
            small_url = _blob_url(pt.url, f"{UPSTREAM_PREFIX}/{images.small.repo}", small.digest)
            curl_parallel(small_url, 1, small.size, _BLOB_TIMEOUT)
            mem.peaks[f"cold fill, {small.size // 2**20} MiB blob"] = rss.peak_mib()
            rss.reset()
        figures[PT].fill_mbps = _timed_fill(urls[PT], big.size)
        if mem is not None:
            mem.peaks[f"cold fill, {big.size // 2**20} MiB blob"] = rss.peak_mib()
        if not blobs:
            stack.close()
            _record_peaks(mem, peaks)
            return {}, mem
        dist = stack.enter_context(distribution_proxy(s.workdir / "distribution", upstream.url))
        if mem is not None:
            time.sleep(1.0)
            mem.at_rest[DIST] = tree_memory(dist.pid)
            peaks[DIST] = stack.enter_context(TreePeak(dist.pid))
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
    _record_peaks(mem, peaks)
    for name in urls:
        figures[name].single = Throughput(1, tuple(single[name]))
        figures[name].parallel = Throughput(s.parallel_clients, tuple(parallel[name]))
    return figures, mem


def _record_peaks(mem: MemoryFigures | None, peaks: dict[str, TreePeak]) -> None:
    for name, peak in peaks.items():
        if mem is not None and peak.peak is not None:
            mem.under_load[name] = peak.peak


def manifest_rates(
    upstream: UpstreamRegistry, images: ImageSet, s: Settings
) -> tuple[dict[str, ServerFigures], LogFigures]:
    """Measurement 2: pullthrough and distribution both up, each kind of request measured on
    one then the other; then a second pullthrough with its request log on (its default) beside
    the first (log off), GET by tag alternating between the two."""
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
        logged = stack.enter_context(
            pullthrough(
                s.workdir / "pullthrough-logged",
                upstream.url,
                workers=s.workers,
                log_level="info",
                source=s.source,
            )
        )
        assert logged.pid is not None
        log_on = _Target(
            ServerFigures("log on"), logged.url, f"{UPSTREAM_PREFIX}/", worker_pids(logged.pid)
        )
        log_off = _Target(ServerFigures("log off"), pt.url, f"{UPSTREAM_PREFIX}/", targets[0].pids)
        _get_manifest(logged.url, f"{UPSTREAM_PREFIX}/{repo}", TAG)
        log = LogFigures()
        pair = ((log_off, log.off), (log_on, log.on))
        for round_number in range(s.log_rounds):
            # off, on, then on, off: a drift of the machine's load hits both alike.
            for target, runs in pair if round_number % 2 == 0 else pair[::-1]:
                _manifest_rate(target, repo, "GET tag", digests[0], s)
                runs.append(target.figures.manifests["GET tag"])
    return figures, log


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


def cold_blob(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> ColdBlobFigures:
    """Measurement 8: the big blob, one GET through an empty pullthrough then an empty
    distribution proxy, alternating, each run on a freshly started cache."""
    big = images.big.largest
    figures = ColdBlobFigures(big.size, {PT: [], DIST: []}, {PT: [], DIST: [], "direct": []})
    upstream_pid = upstream.pid
    assert upstream_pid is not None

    def timed(name: str, url: str, cache_pid: int | None) -> TimedGet:
        got, cpu = curl_cpu(url, big.size, _BLOB_TIMEOUT, cache_pid, upstream_pid)
        figures.cpu[name].append(cpu)
        return got

    for _ in range(s.cold_blob_repetitions):
        with _pullthrough(s, upstream.url) as pt:
            url = _blob_url(pt.url, f"{UPSTREAM_PREFIX}/{images.big.repo}", big.digest)
            figures.runs[PT].append(timed(PT, url, pt.pid))
        with distribution_proxy(s.workdir / "distribution", upstream.url) as dist:
            url = _blob_url(dist.url, images.big.repo, big.digest)
            figures.runs[DIST].append(timed(DIST, url, dist.pid))
        timed("direct", _blob_url(upstream.url, images.big.repo, big.digest), None)
    figures.sha256_seconds = sha256_cpu_seconds(big.size)
    return figures


def slow_upstream(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> SlowFigures:
    """Measurement 9: the 24-layer image, cold, `pull_parallel` blobs at a time, from an
    upstream behind the rig's proxy set to wait `slow_delay` before forwarding each request and
    to pace each response body at `slow_rate`: directly through that proxy, through pullthrough
    and through distribution's proxy (both with the slow proxy as their upstream), alternating,
    each cache empty at the start of every run."""
    image = images.slow
    figures = SlowFigures(image, s.slow_delay, s.slow_rate, {"direct": [], PT: [], DIST: []})
    repos = {"direct": image.repo, PT: f"{UPSTREAM_PREFIX}/{image.repo}", DIST: image.repo}
    with CountingProxy(upstream.url) as slow:
        slow.delay(".", s.slow_delay)
        slow.throttle("/blobs/", s.slow_rate)
        for _ in range(s.slow_repetitions):
            for name in ("direct", PT, DIST):
                with contextlib.ExitStack() as stack:
                    base = slow.url
                    if name == PT:
                        base = stack.enter_context(_pullthrough(s, slow.url)).url
                    elif name == DIST:
                        cache = distribution_proxy(s.workdir / "distribution", slow.url)
                        base = stack.enter_context(cache).url
                    slow.reset()
                    run = pull(base, repos[name], TAG, parallel=s.pull_parallel)
                    figures.seconds[name].append(run.wall)
                    time.sleep(0.5)  # fills finishing after the pull are counted too
                    figures.upstream_requests[name] = len(slow.requests)
                    figures.max_blob_gets[name] = max(
                        slow.count("GET", path_contains=b.digest) for b in image.blobs
                    )
    return figures
