"""The project's Containerfile built and run with podman, on a Debian bookworm base made here.

No container registry is asked for anything: the base is a root file system that debootstrap
(Debian's) installs from the Debian mirror apt is configured with, imported into a podman store of
the test's own; the build gets Debian packages and PyPI wheels as the Containerfile says. The
CA certificates this machine adds to its trust store (`/usr/local/share/ca-certificates`, where an
egress proxy's CA goes) are added to the base too, so the build trusts what the machine trusts.

podman runs as root with its own store in a short temp directory (overlay), cgroupfs and a file
event log, and with resource limits no higher than this process's own (the container runtime may
not raise them here).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the base has beyond debootstrap's minimal set (the Containerfile installs the same).
BASE_PACKAGES = ("python3", "ca-certificates")
DEBOOTSTRAP_TIMEOUT = 900.0
BUILD_TIMEOUT = 900.0
COMMAND_TIMEOUT = 120.0
_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The first Debian archive URI apt uses for the bookworm suite (deb822 `.sources` files,
    then one-line `.list` files); Debian's own when none is configured."""
    candidates = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, colon, value = line.partition(":")
                if colon and not line.startswith(("#", " ", "\t")):
                    fields[key.strip().lower()] = value.strip()
            types, suites = fields.get("types", "").split(), fields.get("suites", "").split()
            if "deb" in types and DEBIAN_SUITE in suites:
                uris = fields.get("uris", "").split()
                if uris and not uris[0].rstrip("/").endswith("-security"):
                    return uris[0].rstrip("/")
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == DEBIAN_SUITE:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def make_base_tarball(workdir: Path) -> Path:
    """A Debian bookworm root file system (minbase, plus BASE_PACKAGES) as a tar file, for
    `podman import`. Needs root (debootstrap does)."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is missing: `make test` installs it (DEBIAN_TEST_PACKAGES)")
    rootfs = workdir / "rootfs"
    log = workdir / "debootstrap.log"
    command = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        DEBIAN_SUITE,
        str(rootfs),
        debian_mirror(),
    ]
    with log.open("wb") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{log.read_text()[-4000:]}")
    extra = sorted(_EXTRA_CA_DIR.glob("*.crt")) if _EXTRA_CA_DIR.is_dir() else []
    if extra:
        for certificate in extra:
            shutil.copy2(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
        subprocess.run(
            ["chroot", str(rootfs), "update-ca-certificates"],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )
    tarball = workdir / f"debian-{DEBIAN_SUITE}.tar"
    subprocess.run(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=True,
    )
    shutil.rmtree(rootfs)
    return tarball


def _limits() -> list[str]:
    """`--ulimit` options that keep the container's limits at this process's own: podman's
    defaults are higher, and the runtime may not raise them in a sandbox."""
    _soft, files = resource.getrlimit(resource.RLIMIT_NOFILE)
    _soft, processes = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if processes == resource.RLIM_INFINITY or processes > pid_max:
        processes = pid_max
    files = 65536 if files == resource.RLIM_INFINITY else files
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", f"nproc={processes}:{processes}"]


class PodmanStore:
    """A podman image and container store of its own; `close()` removes it whole."""

    def __init__(self) -> None:
        # podman refuses a runroot path over 50 characters: a short temp directory.
        self.base = Path(tempfile.mkdtemp(prefix="pt-image-"))
        self.root = self.base / "root"
        self.runroot = self.base / "run"
        self.tmpdir = self.base / "tmp"
        for path in (self.root, self.runroot, self.tmpdir):
            path.mkdir()
        self.containers_conf = self.base / "containers.conf"
        self.containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.base / "events.log"}"\n'
        )
        self.storage_conf = self.base / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}"\n'
            f'runroot = "{self.runroot}"\n'
        )
        self.limits = _limits()

    def podman(
        self, *args: str, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`podman <store options> <args>`; the caller checks `returncode`."""
        binary = shutil.which("podman")
        if binary is None:
            raise RuntimeError("podman is missing: `make test` installs it")
        command = [
            binary,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--tmpdir",
            str(self.tmpdir),
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *args,
        ]
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "XDG_RUNTIME_DIR": str(self.runroot),
            "XDG_CONFIG_HOME": str(self.base / "config"),
            "XDG_DATA_HOME": str(self.base / "data"),
        }
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )

    def checked(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        result = self.podman(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args[:3])} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def import_base(self, tarball: Path, reference: str) -> None:
        self.checked("import", str(tarball), reference)

    def build(self, context: Path, reference: str, base: str) -> float:
        """Build `context`'s Containerfile on `base`, tagged `reference`; the seconds it took.
        Docker format, so the image keeps its HEALTHCHECK."""
        started = time.monotonic()
        self.checked(
            "build",
            "--format",
            "docker",
            "--pull=never",
            "--network",
            "host",
            *self.limits,
            "--build-arg",
            f"BASE={base}",
            "--file",
            str(context / "Containerfile"),
            "--tag",
            reference,
            str(context),
            timeout=BUILD_TIMEOUT,
        )
        return time.monotonic() - started

    def run(self, image: str, *args: str, env: dict[str, str] | None = None) -> str:
        """`podman run --rm` of one command; its standard output."""
        options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.checked(
            "run", "--rm", "--network", "none", *self.limits, *options, image, *args
        )

    def start(self, image: str, name: str, env: dict[str, str]) -> None:
        """A detached container on the host's network, running the image's default command,
        with a read-only root file system (podman mounts a tmpfs on /tmp; the image's volume
        holds the data directory)."""
        options = ["--read-only", *(f"--env={key}={value}" for key, value in env.items())]
        self.checked(
            "run", "--detach", "--name", name, "--network", "host", *self.limits, *options, image
        )

    def close(self) -> None:
        self.podman("rm", "--all", "--force", "--time", "0")
        self.podman("rmi", "--all", "--force", timeout=BUILD_TIMEOUT)
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
