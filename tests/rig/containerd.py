"""containerd (Debian, 1.6) as a real client: a private daemon and `ctr images pull`.

The daemon runs as root with its own root, state, socket and config in a temp directory, with
only what pulling needs: content, metadata, the native snapshotter and the walking differ. CRI,
runtimes, task services and the snapshotters that want special filesystems are disabled, so
nothing touches the machine's containerd, cgroups or /var/lib.

`ctr images pull` resolves and fetches in the ctr process itself (the daemon stores content and
unpacks), so ctr's environment decides proxies: tests give it a closed proxy port for anything
that is not loopback, so a client that fell back to the real registry fails instead of leaving
the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.rig.lifecycle import Started
from tests.rig.registry import require_binary

_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
PULL_TIMEOUT = 120.0
NAMESPACE = "pullthrough-test"

# Go's http.ProxyFromEnvironment never proxies loopback addresses; everything else goes to a
# port nothing listens on.
CLOSED_PROXY = "http://127.0.0.1:9"
OFFLINE_ENV = {
    "HTTPS_PROXY": CLOSED_PROXY,
    "HTTP_PROXY": CLOSED_PROXY,
    "https_proxy": CLOSED_PROXY,
    "http_proxy": CLOSED_PROXY,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}

_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
    "io.containerd.internal.v1.restart",
)


@dataclass(frozen=True)
class PulledImage:
    """One row of `ctr images ls`: the reference, its media type and the digest it points at."""

    reference: str
    media_type: str
    digest: str


class Containerd(Started):
    """A private `containerd` process; `pull()` drives `ctr` against its socket."""

    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / "containerd.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        # A short base directory: the socket path must fit in sun_path (108 bytes), which a
        # pytest tmp_path does not always leave room for.
        self.base = Path(tempfile.mkdtemp(prefix="pt-ctrd-"))
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.socket = self.base / "containerd.sock"
        self.config_path = self.base / "config.toml"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        binary = require_binary("containerd")
        require_binary("ctr")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **OFFLINE_ENV},
                # Its own process group, so stop() reaches anything it started.
                start_new_session=True,
            )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(_STOP_TIMEOUT)
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def ctr(self, *args: str, timeout: float = PULL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """`ctr --address <socket> --namespace <ns> <args>`; the caller checks `returncode`."""
        command = [
            require_binary("ctr"),
            "--address",
            str(self.socket),
            "--namespace",
            NAMESPACE,
            *args,
        ]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **OFFLINE_ENV},
        )

    def pull(self, reference: str, hosts_dir: Path) -> subprocess.CompletedProcess[str]:
        """`ctr images pull --hosts-dir <dir> --snapshotter native <reference>` for the host's
        platform, unpacked."""
        return self.ctr(
            "images",
            "pull",
            "--hosts-dir",
            str(hosts_dir),
            "--snapshotter",
            "native",
            reference,
        )

    def images(self) -> dict[str, PulledImage]:
        """What `ctr images ls` lists, by reference."""
        result = self.ctr("images", "ls")
        if result.returncode != 0:
            raise RuntimeError(f"ctr images ls failed: {result.stderr}")
        images = {}
        for line in result.stdout.splitlines()[1:]:
            reference, media_type, digest, *_ = line.split()
            images[reference] = PulledImage(reference, media_type, digest)
        return images

    def content_digests(self) -> set[str]:
        """Every blob and manifest digest in the content store (each verified on commit)."""
        result = self.ctr("content", "ls", "--quiet")
        if result.returncode != 0:
            raise RuntimeError(f"ctr content ls failed: {result.stderr}")
        return set(result.stdout.split())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                self._process = None
                raise RuntimeError(f"containerd exited on start:\n{self.log_text()[-4000:]}")
            if self.socket.exists() and self.ctr("version", timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        log = self.log_text()[-4000:]
        raise RuntimeError(f"containerd did not answer on {self.socket}:\n{log}")

    def _write_config(self) -> None:
        disabled = ", ".join(f'"{plugin}"' for plugin in _DISABLED_PLUGINS)
        self.config_path.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            f'temp = "{self.base / "tmp"}"\n'
            f"disabled_plugins = [{disabled}]\n"
            "\n[grpc]\n"
            f'  address = "{self.socket}"\n'
            "\n[ttrpc]\n"
            f'  address = "{self.socket}.ttrpc"\n'
            '\n[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{self.base / "opt"}"\n'
        )
        (self.base / "tmp").mkdir()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _unmount_under(base: Path) -> None:
    """Unmount whatever is still mounted below `base` (a layer being applied when the daemon
    died), deepest first, so the directory can be removed."""
    prefix = str(base.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts]
    # /proc/self/mounts escapes spaces as \040; the rig's paths have none.
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
