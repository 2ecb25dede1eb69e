"""The servers under test, each on a free loopback port: the upstream registry, pullthrough,
distribution in proxy mode, and nginx serving the upstream's blob files with sendfile.

The upstream and pullthrough come from the test rig (`tests.rig`); the distribution proxy is the
rig's registry with a `proxy.remoteurl` section; nginx gets a generated config in a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from tests.rig.ports import free_port
from tests.rig.registry import UpstreamRegistry, require_binary
from tests.rig.server import PullthroughServer

_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
UPSTREAM_PREFIX = "up"


class DistributionProxy(UpstreamRegistry):
    """`docker-registry` in pull-through mode (`proxy.remoteurl`), with storage of its own and
    the in-memory blob descriptor cache of Debian's default configuration."""

    def __init__(self, storage_dir: Path, remote_url: str, workdir: Path) -> None:
        self.remote_url = remote_url
        super().__init__(storage_dir, workdir=workdir)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the distribution proxy is not running")
        return self._process.pid

    def _write_config(self) -> None:
        super()._write_config()
        config: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
        config["proxy"] = {"remoteurl": self.remote_url}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


@contextlib.contextmanager
def distribution_proxy(workdir: Path, remote_url: str) -> Iterator[DistributionProxy]:
    """A distribution proxy with empty storage, removed again afterwards."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    proxy = DistributionProxy(workdir / "storage", remote_url, workdir / "registry")
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def pullthrough(
    workdir: Path,
    upstream_url: str,
    *,
    workers: int,
    log_level: str = "warning",
    source: Path | None = None,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[PullthroughServer]:
    """`pullthrough serve` with an empty data directory, removed again afterwards. Images are
    at `/v2/up/<repository>`. `source` is a `src` directory to run instead of the installed
    package (PYTHONPATH comes before the venv's editable install); `config` more top-level
    settings (a `storage` block), `env` more environment (S3 credentials)."""
    shutil.rmtree(workdir, ignore_errors=True)
    server = PullthroughServer(
        workdir,
        upstream_rules(upstream_url),
        extra_config={"workers": workers, "log_level": log_level, **(config or {})},
        env={**source_env(source), **(env or {})},
    )
    server.start()
    try:
        wait_workers(server, workers)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def upstream_rules(upstream_url: str) -> list[dict[str, Any]]:
    """The one rule every benchmarked pullthrough has: `up/…` from the upstream."""
    return [{"prefix": UPSTREAM_PREFIX, "upstream": upstream_url, "default": True}]


def source_env(source: Path | None) -> dict[str, str]:
    """The environment that runs pullthrough from `source` (a `src` directory), if given."""
    return {"PYTHONPATH": str(source)} if source is not None else {}


class NginxBlobServer:
    """nginx answering `GET /v2/<anything>/blobs/sha256:<hex>` from a distribution storage
    directory (`docker/registry/v2/blobs/sha256/<ab>/<hex>/data`) with sendfile."""

    def __init__(self, storage_dir: Path, workdir: Path, workers: int) -> None:
        self.storage_dir = storage_dir.resolve()
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.config_path = workdir / "nginx.conf"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        root = self.storage_dir / "docker/registry/v2/blobs/sha256"
        tmp = self.workdir
        return f"""\
daemon off;
user root;
worker_processes {self.workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        location ~ "^/v2/.+/blobs/sha256:(?<pre>[0-9a-f]{{2}})(?<rest>[0-9a-f]{{62}})$" {{
            alias {root}/$pre/$pre$rest/data;
        }}
    }}
}}
"""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        log = (self.workdir / "stderr.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                [require_binary("nginx"), "-c", str(self.config_path), "-e", "stderr"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_http(self.url + "/", self._process, "nginx")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # nginx: fast shutdown of master and workers
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(_STOP_TIMEOUT)


@contextlib.contextmanager
def nginx(storage_dir: Path, workdir: Path, workers: int) -> Iterator[NginxBlobServer]:
    shutil.rmtree(workdir, ignore_errors=True)
    server = NginxBlobServer(storage_dir, workdir, workers)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_http(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited on start ({process.returncode})")
            try:
                client.get(url)
                return
            except httpx.TransportError:
                time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer on {url} within {_START_TIMEOUT}s")


# --- worker processes and their memory ---------------------------------------------------


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes of `pullthrough serve` (its children, spawned or forked, but not
    multiprocessing's resource tracker), or the server itself when it runs a single worker
    in-process."""
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"_tracker" not in cmdline:
            workers.append(int(entry))
    return sorted(workers) or [server_pid]


def _listening_pids(port: int) -> set[int]:
    done = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return {int(pid) for pid in re.findall(r"pid=(\d+)", done.stdout)}


def wait_workers(server: PullthroughServer, count: int) -> None:
    """Until `count` workers listen on the port: /healthz answers as soon as the first does."""
    assert server.pid is not None
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        workers = worker_pids(server.pid)
        if count == 1 or len(set(workers) & _listening_pids(server.port)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"pullthrough did not start {count} listening workers")


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (`5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0, root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def export_source(revision: str, into: Path) -> Path:
    """`git archive <revision> src` unpacked under `into`: its `src` directory, to benchmark a
    commit while the working tree changes."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    target = into / f"src-{commit[:12]}"
    if not (target / "src").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "src"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, timeout=60, check=True)
    return target / "src"
