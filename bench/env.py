"""The machine and the tools: Debian packages the benchmark needs, their versions, and the
hardware the figures were measured on."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# Debian package → the binary it provides.
DEBIAN_PACKAGES = {
    "docker-registry": "docker-registry",
    "nginx": "nginx",
    "wrk": "wrk",
    "apache2-utils": "ab",  # HEAD request rates: wrk 4.1 cannot parse HEAD responses
    "curl": "curl",
}
_APT_TIMEOUT = 600.0
_VERSION_TIMEOUT = 10.0


def ensure_packages() -> None:
    """Install (apt-get, as root or with sudo) whichever benchmark tools are missing."""
    missing = [pkg for pkg, binary in DEBIAN_PACKAGES.items() if shutil.which(binary) is None]
    if not missing:
        return
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, timeout=_APT_TIMEOUT, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", *missing],
        check=True,
        timeout=_APT_TIMEOUT,
        env=env,
    )


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory: str
    kernel: str
    date: str


@dataclass(frozen=True)
class Versions:
    pullthrough: str
    python: str
    aiohttp: str
    distribution: str
    nginx: str
    wrk: str
    ab: str
    curl: str


def machine() -> Machine:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return Machine(
        cpus=os.cpu_count() or 1,
        cpu_model=model,
        memory=f"{mem_kib / 1024 / 1024:.1f} GiB",
        kernel=platform.release(),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _first_line(command: list[str], pattern: str = "") -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_VERSION_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    for line in (done.stdout + done.stderr).splitlines():
        if pattern in line:
            return line.strip()
    return "unknown"


def _git_revision(revision: str | None, source: Path | None) -> str:
    if source is not None:
        return f"from {source} (--source)"
    if revision is not None:
        commit = _first_line(["git", "rev-parse", "--short", f"{revision}^{{commit}}"])
        return f"git {commit}, exported with --rev {revision}"
    described = _first_line(["git", "describe", "--always", "--dirty"])
    if described in ("unknown", "unavailable"):
        return "no git"
    return f"git {described}, working tree"


def versions(revision: str | None = None, source: Path | None = None) -> Versions:
    try:
        pullthrough = importlib.metadata.version("pullthrough")
    except importlib.metadata.PackageNotFoundError:
        pullthrough = "not installed"
    return Versions(
        pullthrough=f"{pullthrough} ({_git_revision(revision, source)})",
        python=sys.version.split()[0],
        aiohttp=aiohttp.__version__,
        distribution=_first_line(["docker-registry", "--version"], "registry"),
        nginx=_first_line(["nginx", "-v"], "nginx").removeprefix("nginx version: "),
        wrk=_first_line(["wrk", "-v"], "wrk").split(" Copyright")[0],
        ab=_first_line(["ab", "-V"], "ApacheBench").removeprefix("This is ").split(" <")[0],
        curl=_first_line(["curl", "--version"], "curl").split(" (")[0],
    )


def load_average() -> float:
    """The 1-minute load average: above the CPU count, something else was competing."""
    return os.getloadavg()[0]


def cpu_clock() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its waited-for
    descendants) so far: the difference over a run is what other processes took."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    busy = sum(fields[:3]) + sum(fields[5:8])
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return busy / os.sysconf("SC_CLK_TCK"), own
