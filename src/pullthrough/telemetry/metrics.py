"""Prometheus metrics: what each process counts, and the exposition one scrape returns.

`pullthrough serve` with several workers uses prometheus_client's multi-process mode: before
the workers are forked, `use_directory` points the library at a directory of its own (under
the data directory's tmp/, emptied at every start), every process writes its values to
memory-mapped files there, and a scrape answered by any worker reads them all, so it returns
the sum over the workers. A worker that exits is marked dead (`worker_exited`): its live gauges
stop counting, its counters stay in the sums.

Counting is cheap on purpose: the request path adds to counts kept in the process's memory (a
dictionary lookup and a few additions), which are written to the metrics once a second and
before a scrape (`flush`; a write to a memory-mapped file takes a lock, in multi-process mode).
With `metrics: false` (`disable`) nothing is counted.

Labels are bounded: route kinds, status codes, rule prefixes (configured by the operator),
upstream hosts, methods; never a repository, tag or digest.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request latencies span a cached manifest (milliseconds) to a cold large blob (minutes).
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# How long counts from the request path may wait before they are written.
FLUSH_SECONDS = 1.0
_RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)

ROUTE_KINDS = ("manifest", "blob", "token", "admin", "ui", "metrics", "other")
CACHE_RESULTS = ("hit", "miss", "stale", "revalidated")


class Metrics:
    """Every metric of the server, registered on `registry` (a process's own, in-process mode)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.http_requests = Counter(
            "pullthrough_http_requests_total",
            "HTTP requests answered, by route kind and status code.",
            ("route", "code"),
            registry=r,
        )
        self.http_duration = Histogram(
            "pullthrough_http_request_duration_seconds",
            "Time from a request's arrival until its handler returned (a blob being filled "
            "is sent by then; a stored file or a manifest after), by route kind.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "pullthrough_cache_requests_total",
            "Manifests and blobs served, by rule, kind (manifest, blob) and result "
            "(hit, miss, stale, revalidated).",
            ("rule", "kind", "result"),
            registry=r,
        )
        self.served_bytes = Counter(
            "pullthrough_served_bytes_total",
            "Bytes of manifests and blobs sent to clients, by rule, kind and source: cache "
            "(stored, so bytes upstream did not send) or upstream (fetched for the request).",
            ("rule", "kind", "source"),
            registry=r,
        )
        self.upstream_requests = Counter(
            "pullthrough_upstream_requests_total",
            "HTTP requests sent to upstream registries, by rule, host, method and status code "
            "('error' when no response came).",
            ("rule", "host", "method", "code"),
            registry=r,
        )
        self.upstream_duration = Histogram(
            "pullthrough_upstream_request_duration_seconds",
            "Time until an upstream registry's response headers arrived, by rule.",
            ("rule",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_bytes = Counter(
            "pullthrough_upstream_fetched_bytes_total",
            "Blob bytes downloaded from upstream registries by fills, by rule.",
            ("rule",),
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "pullthrough_upstream_ratelimit_remaining",
            "Pulls left in the upstream's rate-limit window (Docker Hub's ratelimit-remaining), "
            "as last reported, by rule.",
            ("rule",),
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.ratelimit_limit = Gauge(
            "pullthrough_upstream_ratelimit_limit",
            "Pulls allowed per rate-limit window (ratelimit-limit), as last reported, by rule.",
            ("rule",),
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.fills_in_progress = Gauge(
            "pullthrough_fills_in_progress",
            "Blob downloads from upstream running now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.fill_readers = Gauge(
            "pullthrough_fill_readers",
            "Client requests reading a blob while it downloads (a fill's waiters).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.fills = Counter(
            "pullthrough_fills_total",
            "Blob downloads finished, by rule and result (committed, failed).",
            ("rule", "result"),
            registry=r,
        )
        self.eager_fills = Counter(
            "pullthrough_eager_fills_total",
            "Blobs of a just-fetched image this process began filling before a client asked, "
            "by result: downloaded (this process fetched it), joined (a fill elsewhere had it "
            "coming, or it was stored), failed.",
            ("result",),
            registry=r,
        )
        self.lifecycle_runs = Counter(
            "pullthrough_lifecycle_runs_total",
            "Lifecycle runs (expiry, size cap, garbage collection), by result (ok, failed).",
            ("result",),
            registry=r,
        )
        self.lifecycle_duration = Histogram(
            "pullthrough_lifecycle_run_duration_seconds",
            "How long lifecycle runs took.",
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.lifecycle_images = Counter(
            "pullthrough_lifecycle_expired_images_total",
            "Images removed by lifecycle runs, by reason (policy, size_cap).",
            ("reason",),
            registry=r,
        )
        self.gc_blobs = Counter(
            "pullthrough_gc_deleted_blobs_total",
            "Blobs (and orphan files) deleted by garbage collection.",
            registry=r,
        )
        self.gc_bytes = Counter(
            "pullthrough_gc_freed_bytes_total",
            "Bytes freed by garbage collection.",
            registry=r,
        )
        self.scans = Counter(
            "pullthrough_scans_total",
            "Vulnerability scans of images finished, by result.",
            ("result",),
            registry=r,
        )
        self.scan_queue = Gauge(
            "pullthrough_scan_queue",
            "Images waiting to be scanned, as last counted.",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        # The request path's counts wait here, by label values, and are written to the
        # metrics (memory-mapped files, in multi-process mode: a lock and a write each) once a
        # second and before a scrape, a handful of writes for any number of requests.
        self._requests: dict[tuple[str, int], _Timed] = {}
        self._cache: dict[tuple[str, str, str], _Served] = {}
        self._upstream: dict[tuple[str, str, str, str], _Timed] = {}
        self._flush_due = False

    def request(self, route: str, status: int, seconds: float) -> None:
        timed = self._requests.get((route, status))
        if timed is None:
            timed = _Timed(
                self.http_requests.labels(route, str(status)),
                self.http_duration.labels(route),
            )
            self._requests[(route, status)] = timed
        timed.add(seconds)
        if not self._flush_due:
            self._flush_soon()

    def served(self, rule: str, kind: str, result: str, sent: int) -> None:
        served = self._cache.get((rule, kind, result))
        if served is None:
            source = "upstream" if result == "miss" else "cache"
            served = _Served(
                self.cache_requests.labels(rule, kind, result),
                self.served_bytes.labels(rule, kind, source),
            )
            self._cache[(rule, kind, result)] = served
        served.count += 1
        served.sent += sent
        if not self._flush_due:
            self._flush_soon()

    def flush(self) -> None:
        """Write the counts waiting since the last flush to the metrics."""
        self._flush_due = False
        for timed in self._requests.values():
            timed.flush()
        for timed in self._upstream.values():
            timed.flush()
        for served in self._cache.values():
            served.flush()

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a command, a test): at once
            self.flush()
            return
        self._flush_due = True
        loop.call_later(FLUSH_SECONDS, self.flush)

    def fill_ended(self, rule: str, committed: bool, fetched: int) -> None:
        """A download this process ran ended, committed or not, with `fetched` bytes kept."""
        self.fills_in_progress.dec()
        self.fills.labels(rule, "committed" if committed else "failed").inc()
        if fetched:
            self.upstream_bytes.labels(rule).inc(fetched)

    def lifecycle_ran(
        self,
        seconds: float,
        *,
        ok: bool,
        expired: int = 0,
        evicted: int = 0,
        blobs_deleted: int = 0,
        bytes_freed: int = 0,
    ) -> None:
        """A lifecycle run (expiry, size cap, garbage collection) ended."""
        self.lifecycle_runs.labels("ok" if ok else "failed").inc()
        self.lifecycle_duration.observe(seconds)
        if expired:
            self.lifecycle_images.labels("policy").inc(expired)
        if evicted:
            self.lifecycle_images.labels("size_cap").inc(evicted)
        if blobs_deleted:
            self.gc_blobs.inc(blobs_deleted)
        if bytes_freed:
            self.gc_bytes.inc(bytes_freed)

    def upstream_answered(
        self, rule: str, host: str, method: str, code: str, seconds: float | None
    ) -> None:
        key = (rule, host, method, code)
        timed = self._upstream.get(key)
        if timed is None:
            timed = _Timed(
                self.upstream_requests.labels(rule, host, method, code),
                self.upstream_duration.labels(rule),
            )
            self._upstream[key] = timed
        if seconds is None:
            timed.count += 1
        else:
            timed.add(seconds)
        if not self._flush_due:
            self._flush_soon()


class _Timed:
    """A counter child and a histogram child, with the counts not yet written to them."""

    __slots__ = ("buckets", "count", "counter", "histogram", "observed", "total")

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self.counter = counter
        self.histogram = histogram
        self.count = 0  # counter increments
        self.observed = 0  # histogram observations, in `buckets` and `total`
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.observed += 1
        self.buckets[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def flush(self) -> None:
        if self.count:
            self.counter.inc(self.count)
            self.count = 0
        if self.observed:
            # What `observe` would have written for each: the sum, and each one's bucket
            # (prometheus_client keeps a histogram's buckets uncumulated, summing at export).
            self.histogram._sum.inc(self.total)
            for i, count in enumerate(self.buckets):
                if count:
                    self.histogram._buckets[i].inc(count)
                    self.buckets[i] = 0
            self.observed, self.total = 0, 0.0


class _Served:
    """The cache-result and bytes counter children of one (rule, kind, result), with the
    counts not yet written to them."""

    __slots__ = ("count", "requests", "sent", "sent_bytes")

    def __init__(self, requests: Counter, sent_bytes: Counter) -> None:
        self.requests = requests
        self.sent_bytes = sent_bytes
        self.count = 0
        self.sent = 0

    def flush(self) -> None:
        if self.count:
            self.requests.inc(self.count)
            self.count = 0
        if self.sent:
            self.sent_bytes.inc(self.sent)
            self.sent = 0


class _Current:
    """This process's metrics: made at first use (after `use_directory`, in a server), or
    none at all once `disable` was called."""

    metrics: Metrics | None = None
    registry: CollectorRegistry | None = None  # in-process mode: where they are registered
    enabled = True
    directory: Path | None = None


def current() -> Metrics | None:
    """The metrics to count on, or None when metrics are off."""
    found = _Current.metrics
    if found is not None or not _Current.enabled:
        return found
    # In multi-process mode the values live in the directory's files, read by a registry made
    # for each scrape (`gather`); in-process, they are registered on a registry of their own.
    registry = None if _Current.directory is not None else CollectorRegistry()
    _Current.metrics = Metrics(registry)
    _Current.registry = registry
    return _Current.metrics


def use_directory(directory: Path) -> None:
    """Multi-process mode over `directory`, emptied first: call in the server process before any
    metric exists and before the workers are forked (prometheus_client reads the directory
    from the environment when a value is made)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks its value class when imported, which may have been before.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _Current.directory = directory
    _Current.metrics = None


def disable() -> None:
    """No metrics in this process (`metrics: false`): nothing is counted, `/metrics` is gone."""
    _Current.enabled = False
    _Current.metrics = None


def enabled() -> bool:
    return _Current.enabled


def worker_exited(pid: int) -> None:
    """A worker process ended: its live gauges (fills in progress) stop counting."""
    if _Current.directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(_Current.directory))  # type: ignore[no-untyped-call]


def flush() -> None:
    """Write this process's waiting counts: before a scrape, and when a worker stops."""
    if _Current.metrics is not None:
        _Current.metrics.flush()


def gather(extra: Iterable[Metric] = ()) -> CollectorRegistry:
    """A registry holding every process's metrics (this one's, in-process) and `extra`
    families collected for this scrape."""
    flush()
    registry = CollectorRegistry(auto_describe=False)
    if _Current.directory is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=str(_Current.directory)
        )
    else:
        current()
        if _Current.registry is not None:
            registry.register(_Forward(_Current.registry))
    families = list(extra)
    if families:
        registry.register(_Fixed(families))
    return registry


class _Forward:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
