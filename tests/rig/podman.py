"""podman (Debian, 4.3) as a real client: `podman pull` into a private vfs store.

Everything podman would read or write on the machine is redirected into a temp directory: image
storage (`--root`, `--runroot`, vfs), libpod's tmp dir, containers.conf, storage.conf,
registries.conf, the auth file and the signature policy. cgroupfs and a file event log keep it
off systemd. The same closed proxy as for ctr makes any fallback to a real registry fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.rig.containerd import OFFLINE_ENV
from tests.rig.registry import require_binary

PULL_TIMEOUT = 120.0


class Podman:
    """One private podman store, configured by a registries.conf the test writes
    (`registries_conf`); `close()` removes the store."""

    def __init__(self, workdir: Path, registries_conf: Path) -> None:
        self.workdir = workdir
        self.registries_conf = registries_conf
        # podman refuses a runroot path over 50 characters: the store lives in a short temp
        # directory, the configuration files in `workdir`.
        self.base = Path(tempfile.mkdtemp(prefix="pt-podman-"))
        self.root = self.base / "root"
        self.runroot = self.base / "run"
        self.tmpdir = self.base / "tmp"
        self.policy = workdir / "policy.json"
        self.containers_conf = workdir / "containers.conf"
        self.storage_conf = workdir / "storage.conf"
        for path in (workdir, self.root, self.runroot, self.tmpdir):
            path.mkdir(parents=True, exist_ok=True)
        # An empty auth file of its own, so no credentials of the machine's are sent.
        self.auth_file = workdir / "auth.json"
        self.auth_file.write_text('{"auths": {}}')
        # The tests pull unsigned images from a loopback registry: accept anything.
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{workdir / "events.log"}"\n'
        )
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n'
        )

    def run(self, *args: str, timeout: float = PULL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """`podman <global options> <args>`; the caller checks `returncode`."""
        command = [
            require_binary("podman"),
            "--storage-driver",
            "vfs",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--tmpdir",
            str(self.tmpdir),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *args,
        ]
        env = {
            **os.environ,
            **OFFLINE_ENV,
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            # Keep podman's per-user state (and any ~/.config/containers) out of the picture.
            "XDG_RUNTIME_DIR": str(self.runroot),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "HOME": str(self.workdir),
        }
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )

    def pull(self, reference: str) -> subprocess.CompletedProcess[str]:
        """`podman pull <reference>` for the host's platform."""
        return self.run("pull", "--signature-policy", str(self.policy), reference)

    def image_digest(self, reference: str) -> str:
        """The manifest digest podman recorded for `reference` (for an index: the index's)."""
        result = self.run("image", "inspect", "--format", "{{.Digest}}", reference)
        if result.returncode != 0:
            raise RuntimeError(f"podman image inspect {reference} failed: {result.stderr}")
        return result.stdout.strip()

    def image_id(self, reference: str) -> str:
        """The image ID: the digest of the config blob, as `sha256:<hex>`."""
        result = self.run("image", "inspect", "--format", "{{.ID}}", reference)
        if result.returncode != 0:
            raise RuntimeError(f"podman image inspect {reference} failed: {result.stderr}")
        return "sha256:" + result.stdout.strip()

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
