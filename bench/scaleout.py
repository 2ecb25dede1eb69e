"""Measurements 6 and 7: pullthrough with its blobs on S3 (a real Swift + s3api server from the
test rig) and replicas sharing one PostgreSQL database and one bucket behind nginx.

6. The big blob, warm, from pullthrough on the filesystem, pullthrough on S3 streaming the object,
   pullthrough on S3 answering 307 to a presigned URL (curl -L follows it), and the presigned URL
   fetched directly from Swift (the object store's own ceiling).
7. The cold-pull image pulled by many clients at once through nginx in front of 3 replicas, of 1
   replica (both on PostgreSQL + S3), and of 1 pullthrough on the filesystem + SQLite, with a
   counting proxy before the upstream.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.rig.nginx import Nginx
from tests.rig.proxy import CountingProxy
from tests.rig.registry import UpstreamRegistry
from tests.rig.replicas import Replicas
from tests.rig.s3server import S3Server, sign_v4

from bench.images import TAG, ImageSet
from bench.measure import MB, BenchError, Throughput, curl_parallel, pull
from bench.phases import Settings
from bench.servers import (
    UPSTREAM_PREFIX,
    pullthrough,
    source_env,
    upstream_rules,
    wait_workers,
)

_BLOB_TIMEOUT = 600.0
_HIT_TIMEOUT = 60.0  # a finished fill's object becomes the blob's key within this
_PULL_TIMEOUT = 600.0
_REDIRECT_TTL = 3600  # presigned URLs outlive the phase

FS = "pullthrough, filesystem"
S3_STREAM = "pullthrough, S3 (streamed)"
S3_REDIRECT = "pullthrough, S3 + redirect"
SWIFT = "Swift, presigned URL"
BLOB_TARGETS = (FS, S3_STREAM, S3_REDIRECT, SWIFT)

ONE_FS = "1 pullthrough, filesystem + SQLite"
ONE_REPLICA = "1 replica, PostgreSQL + S3"
THREE_REPLICAS = "3 replicas, PostgreSQL + S3"
REPLICA_TARGETS = (ONE_FS, ONE_REPLICA, THREE_REPLICAS)


@dataclass
class S3BlobFigures:
    """Measurement 6: MB/s per target, 1 client and `clients` at once."""

    size: int
    clients: int
    single: dict[str, Throughput] = field(default_factory=dict)
    parallel: dict[str, Throughput] = field(default_factory=dict)
    fill_mbps: dict[str, float] = field(default_factory=dict)  # the cold fill that warmed it
    redirect_ms: float | None = None  # median time to a 307 answer (headers only)
    head_ms: float | None = None  # median time to a HEAD of the blob, same server
    store_head_ms: float | None = None  # a signed HEAD of its object, to Swift


@dataclass
class ReplicaRun:
    """One cold pull by all clients through one target, with a fresh cache."""

    seconds: float
    slowest_first_byte: float | None
    blob_gets: dict[str, int]  # digest → upstream GETs
    manifest_gets: int
    served: dict[str, int]  # replica (host:port) → blob GETs nginx sent it


@dataclass
class ReplicaFigures:
    name: str
    replicas: int
    clients: int
    runs: list[ReplicaRun] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def max_blob_gets(self) -> int:
        return max((max(run.blob_gets.values()) for run in self.runs), default=0)

    @property
    def min_blob_gets(self) -> int:
        return min((min(run.blob_gets.values()) for run in self.runs), default=0)


# --- 6. warm blob throughput on S3 ----------------------------------------------------------


def _storage(s3: S3Server, bucket: str, prefix: str, *, redirect: bool) -> dict[str, Any]:
    return {
        "storage": {
            "url": f"s3://{bucket}/{prefix}",
            "endpoint": s3.endpoint,
            "region": s3.region,
            "path_style": True,
            "redirect_blobs": redirect,
            "redirect_ttl": _REDIRECT_TTL,
        }
    }


def _s3_env(s3: S3Server) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}


@contextlib.contextmanager
def _s3_server(workdir: Path) -> Iterator[S3Server]:
    """Swift + s3api with its device under `workdir`, every process stopped and the directory
    removed afterwards."""
    shutil.rmtree(workdir, ignore_errors=True)
    server = S3Server(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _first_answer(url: str) -> httpx.Response:
    """The status and headers of a GET, not following redirects; the body is not read."""
    with (
        httpx.Client(timeout=30.0, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        return response


def _wait_stored(url: str, *, redirect: bool) -> None:
    """Until the blob is answered from storage: a hit, or a 307 with redirects on."""
    deadline = time.monotonic() + _HIT_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        answer = _first_answer(url)
        if redirect and answer.status_code == 307:
            return
        if answer.status_code == 200 and answer.headers.get("X-Pullthrough-Cache") == "hit":
            return
        time.sleep(0.2)
    status = None if answer is None else answer.status_code
    raise BenchError(f"{url} not answered from storage within {_HIT_TIMEOUT}s (last: {status})")


def _presigned(url: str) -> str:
    answer = _first_answer(url)
    if answer.status_code != 307:
        raise BenchError(f"{url}: expected a 307 to the bucket, got {answer.status_code}")
    return answer.headers["Location"]


def _answer_ms(url: str, method: str, status: int, count: int = 20) -> float:
    """Median milliseconds for an answer (headers and an empty body) over one keep-alive
    connection."""
    samples = []
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        for _ in range(count):
            started = time.monotonic()
            response = client.request(method, url)
            samples.append((time.monotonic() - started) * 1000)
            if response.status_code != status:
                raise BenchError(f"{method} {url}: expected {status}, got {response.status_code}")
    return statistics.median(samples)


def _store_head_ms(s3: S3Server, bucket: str, prefix: str, digest: str, count: int = 20) -> float:
    """Median milliseconds for a signed HEAD of the blob's object, sent to Swift directly over
    one keep-alive connection (signing not timed)."""
    algorithm, hex_digest = digest.split(":")
    path = f"/{bucket}/{prefix}/blobs/{algorithm}/{hex_digest[:2]}/{hex_digest}"
    url = s3.endpoint + urllib.parse.quote(path)
    samples = []
    with httpx.Client(timeout=30.0) as client:
        for _ in range(count):
            headers = sign_v4(
                "HEAD",
                url,
                {},
                b"",
                access_key=s3.access_key,
                secret_key=s3.secret_key,
                region=s3.region,
            )
            started = time.monotonic()
            response = client.head(url, headers=headers)
            samples.append((time.monotonic() - started) * 1000)
            if response.status_code != 200:
                raise BenchError(f"HEAD {path} on the S3 server: {response.status_code}")
    return statistics.median(samples)


def s3_blobs(upstream: UpstreamRegistry, images: ImageSet, s: Settings) -> S3BlobFigures:
    """Measurement 6. Three pullthroughs up at once (filesystem, S3 streamed, S3 redirected;
    one bucket, a prefix each), each warmed by a cold fill of the big blob; then, one target
    loaded at a time, the repetitions alternate between them and Swift itself."""
    big = images.big.largest
    repo = f"{UPSTREAM_PREFIX}/{images.big.repo}"
    figures = S3BlobFigures(size=big.size, clients=s.parallel_clients)
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(_s3_server(s.workdir / "s3"))
        bucket = s3.bucket("bench-blobs")
        env = _s3_env(s3)
        servers = {
            FS: stack.enter_context(
                pullthrough(s.workdir / "pt-fs", upstream.url, workers=s.workers, source=s.source)
            ),
            S3_STREAM: stack.enter_context(
                pullthrough(
                    s.workdir / "pt-s3",
                    upstream.url,
                    workers=s.workers,
                    source=s.source,
                    config=_storage(s3, bucket, "streamed", redirect=False),
                    env=env,
                )
            ),
            S3_REDIRECT: stack.enter_context(
                pullthrough(
                    s.workdir / "pt-s3r",
                    upstream.url,
                    workers=s.workers,
                    source=s.source,
                    config=_storage(s3, bucket, "redirected", redirect=True),
                    env=env,
                )
            ),
        }
        urls = {name: f"{pt.url}/v2/{repo}/blobs/{big.digest}" for name, pt in servers.items()}
        for name, url in urls.items():
            started = time.monotonic()
            curl_parallel(url, 1, big.size, _BLOB_TIMEOUT, follow=True)
            figures.fill_mbps[name] = big.size / (time.monotonic() - started) / MB
            _wait_stored(url, redirect=name == S3_REDIRECT)
        figures.redirect_ms = _answer_ms(urls[S3_REDIRECT], "GET", 307)
        figures.head_ms = _answer_ms(urls[S3_REDIRECT], "HEAD", 200)
        figures.store_head_ms = _store_head_ms(s3, bucket, "redirected", big.digest)

        def url_of(name: str) -> str:
            # A fresh presigned URL each time, as each client gets one.
            return _presigned(urls[S3_REDIRECT]) if name == SWIFT else urls[name]

        for name in BLOB_TARGETS:  # once each from storage: the page cache is warm for all
            curl_parallel(url_of(name), 1, big.size, _BLOB_TIMEOUT, follow=True)
        single: dict[str, list[float]] = {name: [] for name in BLOB_TARGETS}
        parallel: dict[str, list[float]] = {name: [] for name in BLOB_TARGETS}
        for _ in range(s.s3_single_repetitions):
            for name in BLOB_TARGETS:
                mbps = curl_parallel(url_of(name), 1, big.size, _BLOB_TIMEOUT, follow=True)
                single[name].append(mbps)
        for _ in range(s.s3_parallel_repetitions):
            for name in BLOB_TARGETS:
                mbps = curl_parallel(
                    url_of(name), s.parallel_clients, big.size, _BLOB_TIMEOUT, follow=True
                )
                parallel[name].append(mbps)
    for name in BLOB_TARGETS:
        figures.single[name] = Throughput(1, tuple(single[name]))
        figures.parallel[name] = Throughput(s.parallel_clients, tuple(parallel[name]))
    return figures


# --- 7. cold pull over replicas -------------------------------------------------------------


@contextlib.contextmanager
def _target(
    name: str, counter: CountingProxy, s3: S3Server, s: Settings, index: int
) -> Iterator[tuple[str, Nginx]]:
    """The target `name` with an empty cache, behind nginx: (its URL, the balancer)."""
    workdir = s.workdir / f"replicas-{index}"
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        if name == ONE_FS:
            with (
                pullthrough(
                    workdir / "pullthrough", counter.url, workers=s.workers, source=s.source
                ) as server,
                Nginx(workdir / "nginx", [server.host]) as balancer,
            ):
                yield balancer.url, balancer
            return
        count = 3 if name == THREE_REPLICAS else 1
        bucket = s3.bucket(f"bench-replicas-{index}")
        replicas = Replicas(
            workdir,
            upstream_rules(counter.url),
            count,
            workers=s.workers,
            settings={"log_level": "warning"},
            s3=s3,
            bucket=bucket,
            env=source_env(s.source),
        )
        with replicas:
            for server in replicas.servers:
                wait_workers(server, s.workers)
            yield replicas.url, replicas.balancer
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _counts(counter: CountingProxy, images: ImageSet) -> tuple[dict[str, int], int]:
    blobs = {b.digest: counter.count("GET", path_contains=b.digest) for b in images.cold.blobs}
    return blobs, counter.count("GET", path_contains="/manifests/")


def replica_pulls(
    upstream: UpstreamRegistry, images: ImageSet, s: Settings
) -> list[ReplicaFigures]:
    """Measurement 7: `replica_clients` cold pulls of the cold-pull image at once through each
    target (fresh cache, database and bucket each time); the repetitions alternate between the
    targets."""
    image = images.cold
    repo = f"{UPSTREAM_PREFIX}/{image.repo}"
    figures = {
        name: ReplicaFigures(name, 3 if name == THREE_REPLICAS else 1, s.replica_clients)
        for name in REPLICA_TARGETS
    }
    index = 0
    with _s3_server(s.workdir / "s3") as s3, CountingProxy(upstream.url) as counter:
        for _ in range(s.replica_repetitions):
            for name in REPLICA_TARGETS:
                index += 1
                with _target(name, counter, s3, s, index) as (url, balancer):
                    counter.reset()
                    run = pull(
                        url,
                        repo,
                        TAG,
                        clients=s.replica_clients,
                        parallel=s.pull_parallel,
                        timeout=_PULL_TIMEOUT,
                    )
                    time.sleep(0.5)  # the access log and the proxy's counts settle
                    blob_gets, manifest_gets = _counts(counter, images)
                    figures[name].runs.append(
                        ReplicaRun(
                            seconds=run.wall,
                            slowest_first_byte=max(run.first_bytes, default=None),
                            blob_gets=blob_gets,
                            manifest_gets=manifest_gets,
                            served=balancer.served("/blobs/"),
                        )
                    )
    return [figures[name] for name in REPLICA_TARGETS]
