"""Which OSV ecosystems apply to an image's operating system: `Debian:12` to Debian 12 and not
Debian 11, `Alpine:v3.19` to Alpine 3.19.x, `Ubuntu:22.04:LTS` to Ubuntu 22.04, `Rocky Linux:9`
to Rocky 9.x, `Red Hat:enterprise_linux:9::appstream` to RHEL 9."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pullthrough.scanning.model import Distro

# Debian's release numbers by codename, for an image whose os-release has no VERSION_ID
# (testing and unstable name only their codename).
DEBIAN_CODENAMES = {
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
}

# os-release ID → OSV ecosystem base.
OSV_BASES = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "alpine": "Alpine",
    "wolfi": "Wolfi",
    "chainguard": "Chainguard",
    "rhel": "Red Hat",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "opensuse-leap": "openSUSE",
    "opensuse-tumbleweed": "openSUSE",
    "sles": "SUSE",
    "sle-micro": "SUSE",
    "mageia": "Mageia",
    "photon": "Photon OS",
}


@dataclass(frozen=True, slots=True)
class OsScope:
    """The OSV ecosystem base of an image's OS packages, and the release part of an ecosystem
    name (`12` of `Debian:12`) that applies to it."""

    base: str
    distro_id: str
    release: str  # as the distribution's ecosystems spell it: "12", "v3.19", "22.04", "9"
    full_version: str

    def applies_to(self, ecosystem: str) -> bool:
        base, _, rest = ecosystem.partition(":")
        if base != self.base:
            return False
        if self.base in ("Wolfi", "Chainguard"):
            return True  # rolling: one ecosystem, no releases
        parts = rest.split(":")
        if self.base == "Ubuntu":
            # `Ubuntu:22.04:LTS`; Ubuntu Pro (ESM) fixes need a subscription an image lacks.
            return "Pro" not in parts and parts[0] == self.release
        if self.base == "Red Hat":
            # `Red Hat:enterprise_linux:9::appstream`, `Red Hat:rhel_eus:9.2::baseos`
            return (
                len(parts) >= 2
                and parts[0].startswith(("enterprise_linux", "rhel"))
                and parts[1] in (self.release, self.full_version)
            )
        if self.base == "SUSE":
            # `SUSE:Linux Enterprise Server 15 SP5`, `SUSE:Linux Enterprise Micro 5.5`
            return rest == self.release or rest.endswith(f" {self.release}")
        return rest == self.release


def os_scope(distro: Distro | None, package_ecosystem: str) -> OsScope | None:
    """The scope of an image's OS packages; None when the release is unknown, so no advisory
    is applied to a release it may not be about."""
    if distro is None:
        return None
    distro_id = distro.id.lower()
    base = OSV_BASES.get(distro_id, package_ecosystem.partition(":")[0])
    version = distro.version_id.strip()
    release = _release(distro_id, version, distro.pretty_name)
    if release is None and base not in ("Wolfi", "Chainguard"):
        return None
    return OsScope(base, distro_id, release or "", version)


def _release(distro_id: str, version: str, pretty_name: str) -> str | None:
    numbers: list[str] = re.findall(r"\d+", version)
    if distro_id == "debian":
        if numbers:
            return numbers[0]
        codename = re.search(r"\b([a-z]+)(?:/sid)?\)?\s*$", pretty_name.lower())
        return DEBIAN_CODENAMES.get(str(codename.group(1))) if codename else None
    if not version:
        return None
    if distro_id == "alpine":
        return f"v{numbers[0]}.{numbers[1]}" if len(numbers) >= 2 else None
    if distro_id in ("rhel", "rocky", "almalinux"):
        return numbers[0] if numbers else None
    if distro_id == "opensuse-leap":
        return f"Leap {version}"
    if distro_id == "opensuse-tumbleweed":
        return "Tumbleweed"
    if distro_id == "sles":
        if len(numbers) >= 2 and numbers[1] != "0":
            return f"{numbers[0]} SP{numbers[1]}"
        return numbers[0] if numbers else None
    return version
