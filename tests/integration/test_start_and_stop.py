"""Ready means ready, and a stop finishes what is in progress.

`serving on` appears only once every worker accepts connections, even on a machine too busy to
start them quickly; SIGTERM in the middle of a download lets it commit before the server exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import BLOB_PATH, start_cache
from tests.rig.images import LARGE_FILE_SIZE, FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer

pytestmark = pytest.mark.integration

# A busy process never outlives its test by more than this, even if the test is killed.
BUSY_SECONDS = 120
START_TIMEOUT = 120.0
# The throttled fill takes about this long: surely running when SIGTERM comes, and well
# within the drain's 30 s.
FILL_SECONDS = 8
STOP_TIMEOUT = 90.0

BUSY_LOOP = (
    "import time\n"
    f"end = time.monotonic() + {BUSY_SECONDS}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Every core kept busy by another process while the test runs."""
    busy = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait(timeout=30)


def log_lines(server: PullthroughServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


def wait_for_serving_on(server: PullthroughServer) -> None:
    """Watch the log, never the port, until the server says it serves."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if "serving on" in server.log_text():
            return
        assert server.running, f"pullthrough serve exited:\n{server.log_tail()}"
        time.sleep(0.01)
    raise AssertionError(f"no `serving on` after {START_TIMEOUT}s:\n{server.log_tail()}")


def listening_pids(port: int) -> set[int]:
    listed = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {int(pid) for pid in re.findall(r"pid=(\d+)", listed.stdout)}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_connection_after_serving_on_is_served_on_a_busy_machine(
    rig_tools: None, busy_machine: None, tmp_path: Path, workers: int
) -> None:
    # Fails on the old behaviour: `serving on` was logged before the workers were started (or,
    # with one worker, before its app had opened the cache and bound the port), so the first
    # connection was refused.
    server = PullthroughServer(tmp_path / "server", [], {"workers": workers})
    try:
        server.launch()
        wait_for_serving_on(server)
        with httpx.Client(timeout=60.0) as client:  # no retries: one attempt
            first = client.get(f"{server.url}/v2/")
            ready = client.get(f"{server.url}/readyz")
        listening = listening_pids(server.port)
    finally:
        server.stop()

    assert first.status_code == 200, first.text
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["worker"] == "serving"
    assert len(listening) == workers  # every worker accepted connections already
    [serving_on] = [line for line in log_lines(server) if "serving on" in line["message"]]
    assert f"with {workers} worker(s)" in serving_on["message"]


def test_a_worker_that_cannot_listen_stops_the_server_with_exit_1(
    rig_tools: None, tmp_path: Path
) -> None:
    # Fails on the old behaviour: `serving on` came first, then the supervisor restarted the
    # worker that could not bind, again and again, and never exited.
    taken = socket.socket()  # without SO_REUSEPORT: no worker can share the port
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = PullthroughServer(
            tmp_path / "server", [], {"workers": 2}, port=taken.getsockname()[1]
        )
        server.launch()
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while server.exit_code is None and time.monotonic() < deadline:
                time.sleep(0.1)
            code = server.exit_code
        finally:
            server.stop()
    finally:
        taken.close()

    assert code == 1, server.log_tail()
    log = server.log_text()
    assert "serving on" not in log
    assert "before the server was serving; stopping" in log


def download(url: str, into: dict[str, Any], first_bytes: threading.Event, whole: bool) -> None:
    """GET a blob: all of it (`whole`), or its first bytes and then hang up."""
    hasher = hashlib.sha256()
    received = 0
    try:
        with httpx.stream("GET", url, timeout=STOP_TIMEOUT) as response:
            into["status"] = response.status_code
            for chunk in response.iter_bytes(1 << 20):
                hasher.update(chunk)
                received += len(chunk)
                first_bytes.set()
                if not whole:
                    break
    except httpx.HTTPError as exc:
        into["error"] = repr(exc)
    finally:
        first_bytes.set()
        into["digest"] = f"sha256:{hasher.hexdigest()}"
        into["received"] = received


@pytest.mark.parametrize("client_stays", [True, False], ids=["client-stays", "client-gone"])
def test_sigterm_during_a_cold_fill_lets_it_commit_and_says_so(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    client_stays: bool,
) -> None:
    # Fails on the old behaviour, both ways: the stop named no drained fill; and a fill whose
    # client had gone (a fill carries on without it) was cancelled at once, so nothing was
    # stored and the next pull went upstream again.
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], settings={"workers": 2}
    )
    (layer,) = [b for b in fixture_images.large.blobs if b.size >= LARGE_FILE_SIZE]
    path = f"/v2/up/team/large/blobs/{layer.digest}"
    cache.proxy.throttle(layer.digest, layer.size // FILL_SECONDS)

    result: dict[str, Any] = {}
    first_bytes = threading.Event()
    client = threading.Thread(
        target=download, args=(cache.url(path), result, first_bytes, client_stays)
    )
    client.start()
    try:
        assert first_bytes.wait(60), "the download did not start"
        if not client_stays:
            client.join(timeout=60)
        assert not cache.stored_blob(layer.digest).exists(), "the fill finished too soon"
        assert cache.spool_files(), "no fill in progress"
        cache.server.stop(timeout=STOP_TIMEOUT)  # SIGTERM, then wait for the exit
    finally:
        client.join(timeout=STOP_TIMEOUT)

    assert result.get("error") is None, result
    assert result["status"] == 200
    if client_stays:  # its request was drained too: every byte, verified
        assert (result["received"], result["digest"]) == (layer.size, layer.digest)
    stopped = [line for line in log_lines(cache.server) if "drained_fills" in line]
    assert [line["drained_fills"] for line in stopped if line["drained_fills"]] == [[layer.digest]]
    assert layer.digest in " ".join(line["message"] for line in stopped)
    assert all(line["abandoned_fills"] == [] for line in stopped)
    assert cache.spool_files() == []

    cache.proxy.clear_faults()
    cache.proxy.reset()
    cache.server.start()
    again = cache.get(path)
    assert again.status_code == 200
    assert "sha256:" + hashlib.sha256(again.content).hexdigest() == layer.digest
    assert again.headers["X-Pullthrough-Cache"] == "hit"
    assert cache.proxy.count(path_contains=BLOB_PATH) == 0  # served from the cache alone
