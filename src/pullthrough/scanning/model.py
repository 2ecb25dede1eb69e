"""The values scanning passes between its parts: what an image's layers hold (`Inventory`) and
what the vulnerability database says about it (`Finding`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

# ECR's severity names, most severe first.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")


@dataclass(frozen=True, slots=True)
class Distro:
    """The operating system of an image, from `/etc/os-release` (or `usr/lib/os-release`)."""

    id: str  # ID: debian, ubuntu, alpine, rhel, fedora, rocky, almalinux, ...
    version_id: str  # VERSION_ID: "12", "3.19.1", "9.4"; "" when the file has none
    pretty_name: str = ""


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package as its package database lists it."""

    ecosystem: str  # OSV ecosystem without a release: Debian, Ubuntu, Alpine, Red Hat, PyPI, npm
    name: str  # the binary package (dpkg, apk, rpm) or the distribution's name (PyPI, npm)
    version: str  # as the database spells it (dpkg with epoch, apk `1.2-r3`, rpm `e:v-r`)
    purl: str  # its package URL (packageurl-python)
    source_name: str | None = None  # dpkg `Source:`, apk `o:` origin, rpm source rpm's name
    source_version: str | None = None  # the source package's version when it differs
    layer: str = ""  # digest of the layer whose file listed it
    path: str = ""  # that file, relative to the image root


@dataclass(frozen=True, slots=True)
class Inventory:
    """What one platform image holds, after its layers are applied in order."""

    distro: Distro | None
    packages: tuple[Package, ...]
    skipped: tuple[str, ...] = ()  # what could not be read, said plainly (never silently left)


@dataclass(frozen=True, slots=True)
class Finding:
    """One advisory affecting one package of an image."""

    advisory: str  # the OSV id (DSA-…, GHSA-…, CVE-…)
    aliases: tuple[str, ...]
    package: Package
    severity: str  # one of SEVERITIES
    score: float | None  # CVSS base score, when the advisory has a vector
    vector: str | None
    fixed_version: str | None  # the first version that fixes it, when there is one
    summary: str


class LayerSource(Protocol):
    """Reads a layer blob of an image, as stored (compressed); the wiring passes one that goes
    through the cache, so a layer not cached yet is filled once like any pull."""

    def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]: ...
