"""Measuring primitives: curl downloads for blob throughput, wrk for request rates, the pulling
client (`bench.client`) as a subprocess, and per-process peak RSS. Every one is bounded in time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import reset_peak_rss, status_kib, worker_pids

MB = 1_000_000
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A measurement could not be made (a wrong status, a short body, a timeout)."""


# --- blob throughput with curl ------------------------------------------------------------


def curl_parallel(
    url: str, clients: int, size: int, timeout: float, *, follow: bool = False
) -> float:
    """`clients` curl processes download `url` at once into /dev/null: aggregate MB/s over the
    wall time from the first start to the last exit. `follow`: curl -L (a 307 to the object
    store is followed, the status checked is the last one's)."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    if follow:
        command.insert(1, "-L")
    started = time.monotonic()
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(clients)
    ]
    outputs = []
    try:
        for process in processes:
            remaining = max(1.0, timeout - (time.monotonic() - started))
            out, _ = process.communicate(timeout=remaining)
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = time.monotonic() - started
    for out in outputs:
        status, received = out.split()
        if status != "200" or int(received) != size:
            raise BenchError(f"GET {url}: HTTP {status}, {received} of {size} bytes")
    return clients * size / wall / MB


@dataclass(frozen=True)
class Throughput:
    clients: int
    samples: tuple[float, ...]  # MB/s, one per repetition

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# --- request rates with wrk ---------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """A request-rate run, by wrk (GET) or ab (HEAD: wrk 4.1 hangs on HEAD responses)."""

    tool: str
    method: str
    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: str
    latency_avg: str
    wrk_cpu_percent: float  # the load tool's own CPU use over the run, in % of one core
    server_cpu_percent: float  # the server processes' CPU use over the run, likewise


def wrk(
    url: str,
    *,
    method: str,
    accept: str,
    seconds: int,
    connections: int,
    threads: int,
    scratch: Path,
    server_pids: list[int],
) -> WrkResult:
    scratch.mkdir(parents=True, exist_ok=True)
    script = scratch / f"{method.lower()}.lua"
    script.write_text(f'wrk.method = "{method}"\n')
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        "-H",
        f"Accept: {accept}",
        url,
    ]
    before, server_before = _children_cpu(), cpu_seconds(server_pids)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    cpu = (_children_cpu() - before) / seconds * 100
    server_cpu = (cpu_seconds(server_pids) - server_before) / seconds * 100
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    latency = re.search(r"Latency\s+(\S+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:\s+(.*)", out)
    if rps is None or total is None:
        raise BenchError(f"cannot read wrk output:\n{out}")
    return WrkResult(
        tool="wrk",
        method=method,
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1).strip() if errors else "none",
        latency_avg=latency.group(1) if latency else "?",
        wrk_cpu_percent=cpu,
        server_cpu_percent=server_cpu,
    )


def ab_head(
    url: str, *, accept: str, seconds: int, connections: int, server_pids: list[int]
) -> WrkResult:
    """HEAD requests with ApacheBench (`ab -k -i`), since wrk cannot: HTTP/1.0 keep-alive, one
    thread."""
    command = [
        "ab",
        "-k",
        "-i",
        "-q",
        f"-c{connections}",
        f"-t{seconds}",
        "-n10000000",
        "-H",
        f"Accept: {accept}",
        url,
    ]
    before, server_before = _children_cpu(), cpu_seconds(server_pids)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    cpu = (_children_cpu() - before) / seconds * 100
    server_cpu = (cpu_seconds(server_pids) - server_before) / seconds * 100
    out = done.stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    total = re.search(r"Complete requests:\s+(\d+)", out)
    if done.returncode != 0 or rps is None or total is None:
        raise BenchError(f"ab failed ({done.returncode}): {done.stderr[-2000:]}\n{out[-2000:]}")
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    latency = re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", out)
    return WrkResult(
        tool="ab",
        method="HEAD",
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=f"{failed.group(1)} failed" if failed else "none",
        latency_avg=f"{latency.group(1)}ms" if latency else "?",
        wrk_cpu_percent=cpu,
        server_cpu_percent=server_cpu,
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (and their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- image pulls with bench.client --------------------------------------------------------


@dataclass(frozen=True)
class PullRun:
    wall: float
    clients: list[dict[str, Any]] = field(repr=False)

    @property
    def errors(self) -> list[str]:
        return [e for c in self.clients for e in c["errors"]]

    @property
    def slowest(self) -> float:
        return max(float(c["elapsed"]) for c in self.clients)

    @property
    def first_bytes(self) -> list[float]:
        return [c["first_byte"] for c in self.clients if c["first_byte"] is not None]


def pull(
    base: str, repo: str, ref: str, *, clients: int = 1, parallel: int = 3, timeout: float = 300.0
) -> PullRun:
    """Run `bench.client` in its own process; raise when any client saw an error."""
    command = [
        sys.executable,
        "-m",
        "bench.client",
        base,
        repo,
        ref,
        f"--clients={clients}",
        f"--parallel={parallel}",
        f"--timeout={timeout}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout + 30, check=False, cwd=REPO_ROOT
    )
    if done.returncode != 0:
        raise BenchError(f"bench.client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    run = PullRun(wall=float(report["wall"]), clients=report["clients"])
    if run.errors:
        raise BenchError(f"pull of {base}/{repo}:{ref} failed: {run.errors[:5]}")
    return run


# --- memory of pullthrough's workers ------------------------------------------------------


class PeakRss:
    """Peak RSS (VmHWM) of each worker of a `pullthrough serve`, reset before each phase."""

    def __init__(self, server_pid: int) -> None:
        self.pids = worker_pids(server_pid)

    def reset(self) -> bool:
        return all([reset_peak_rss(pid) for pid in self.pids])

    def current_mib(self) -> list[float]:
        return [status_kib(pid, "VmRSS") / 1024 for pid in self.pids]

    def peak_mib(self) -> list[float]:
        return [status_kib(pid, "VmHWM") / 1024 for pid in self.pids]


# --- memory of a whole process tree -------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (from /proc/<pid>/stat parent links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += children
        frontier = children
    return tree


@dataclass(frozen=True)
class TreeMemory:
    """Pss and Rss summed over a process tree, MiB. Pss shares each shared page among the
    processes mapping it, so the sum is what the tree costs the machine; Rss counts shared
    pages (the interpreter, libraries) once per process."""

    pss_mib: float
    rss_mib: float
    processes: int


def tree_memory(root: int) -> TreeMemory:
    pss = rss = 0
    pids = process_tree(root)
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return TreeMemory(pss / 1024, rss / 1024, len(pids))


class TreePeak:
    """Samples `tree_memory(root)` every `interval` seconds in a thread while in a `with`
    block; `peak` is the sample with the highest Pss."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak: TreeMemory | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            now = tree_memory(self.root)
            if self.peak is None or now.pss_mib > self.peak.pss_mib:
                self.peak = now
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- one timed download -------------------------------------------------------------------


@dataclass(frozen=True)
class TimedGet:
    """One curl download: seconds to the first body byte and to the end."""

    size: int
    first_byte: float
    total: float

    @property
    def mbps(self) -> float:
        return self.size / self.total / MB

    @property
    def body_mbps(self) -> float:
        """The rate from the first byte to the last: the fill's own rate when the blob is
        cold (the bytes reach the client as the cache receives them)."""
        return self.size / max(1e-9, self.total - self.first_byte) / MB


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds (user + system) that one download cost each party: the cache's process
    tree (0 for a direct download), the upstream registry, and the client."""

    cache: float
    upstream: float
    client: float

    @property
    def total(self) -> float:
        return self.cache + self.upstream + self.client


def curl_cpu(
    url: str, size: int, timeout: float, cache_pid: int | None, upstream_pid: int
) -> tuple[TimedGet, CpuSplit]:
    """`curl_timed`, and the CPU the download cost the cache, the upstream and curl."""
    cache_before = cpu_seconds(process_tree(cache_pid)) if cache_pid is not None else 0.0
    upstream_before = cpu_seconds([upstream_pid])
    client_before = _children_cpu()
    timed = curl_timed(url, size, timeout)
    split = CpuSplit(
        cache=cpu_seconds(process_tree(cache_pid)) - cache_before if cache_pid is not None else 0.0,
        upstream=cpu_seconds([upstream_pid]) - upstream_before,
        client=_children_cpu() - client_before,
    )
    return timed, split


def sha256_cpu_seconds(size: int) -> float:
    """CPU seconds one core takes to sha256 `size` bytes already in memory (hashlib, OpenSSL):
    the least any cache that verifies what it stores spends on it."""
    block = os.urandom(64 << 20)
    hasher = hashlib.sha256()
    started = time.thread_time()
    for _ in range(max(1, size // len(block))):
        hasher.update(block)
    return (time.thread_time() - started) * size / (max(1, size // len(block)) * len(block))


def curl_timed(url: str, size: int, timeout: float) -> TimedGet:
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_starttransfer} %{time_total}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    status, received, first, total = done.stdout.split()
    if status != "200" or int(received) != size:
        raise BenchError(f"GET {url}: HTTP {status}, {received} of {size} bytes")
    return TimedGet(size, float(first), float(total))
