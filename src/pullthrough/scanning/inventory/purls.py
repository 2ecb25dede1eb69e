"""Package records made into `Package`s once the image's distribution is known: the OSV
ecosystem each belongs to and its package URL (packageurl-python)."""

from __future__ import annotations

import re

from packageurl import PackageURL

from pullthrough.scanning.inventory.records import FileKind, PackageRecord
from pullthrough.scanning.model import Distro, Package

# OSV's ecosystem names for the distributions whose packages are rpms.
_RPM_ECOSYSTEMS = {
    "rhel": "Red Hat",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "fedora": "Fedora",
    "centos": "CentOS",
    "opensuse-leap": "openSUSE",
    "opensuse-tumbleweed": "openSUSE",
    "opensuse": "openSUSE",
    "sles": "SUSE",
    "mageia": "Mageia",
    "photon": "Photon OS",
    "amzn": "Amazon Linux",
    "azurelinux": "Azure Linux",
    "mariner": "Azure Linux",
    "ol": "Oracle Linux",
}
_APK_ECOSYSTEMS = {"alpine": "Alpine", "wolfi": "Wolfi", "chainguard": "Chainguard"}
_DPKG_ECOSYSTEMS = {"debian": "Debian", "ubuntu": "Ubuntu"}


def package(
    record: PackageRecord, kind: FileKind, distro: Distro | None, layer: str, path: str
) -> Package:
    if kind is FileKind.DPKG:
        return _dpkg(record, distro, layer, path)
    if kind is FileKind.APK:
        return _apk(record, distro, layer, path)
    if kind is FileKind.RPM:
        return _rpm(record, distro, layer, path)
    if kind is FileKind.PYTHON:
        name = re.sub(r"[-_.]+", "-", record.name).lower()
        purl = PackageURL(type="pypi", name=name, version=record.version)
        return Package(
            "PyPI", record.name, record.version, purl.to_string(), layer=layer, path=path
        )
    if kind is FileKind.NPM:
        scope, _, bare = record.name.rpartition("/")
        purl = PackageURL(type="npm", namespace=scope or None, name=bare, version=record.version)
        return Package("npm", record.name, record.version, purl.to_string(), layer=layer, path=path)
    raise ValueError(f"{path}: {kind} lists no packages")


def _dpkg(record: PackageRecord, distro: Distro | None, layer: str, path: str) -> Package:
    distro_id = distro.id if distro is not None and distro.id in _DPKG_ECOSYSTEMS else "debian"
    release = _release(distro, _DPKG_ECOSYSTEMS)
    qualifiers = _qualifiers(record.arch, f"{distro_id}-{release}" if release else "")
    purl = PackageURL("deb", distro_id, record.name, record.version, qualifiers)
    return _os_package(_DPKG_ECOSYSTEMS[distro_id], record, record.version, purl, layer, path)


def _apk(record: PackageRecord, distro: Distro | None, layer: str, path: str) -> Package:
    distro_id = distro.id if distro is not None and distro.id in _APK_ECOSYSTEMS else "alpine"
    qualifiers = _qualifiers(record.arch, _release(distro, _APK_ECOSYSTEMS))
    purl = PackageURL("apk", distro_id, record.name, record.version, qualifiers)
    return _os_package(_APK_ECOSYSTEMS[distro_id], record, record.version, purl, layer, path)


def _rpm(record: PackageRecord, distro: Distro | None, layer: str, path: str) -> Package:
    ecosystem = _RPM_ECOSYSTEMS.get(distro.id, distro.id) if distro is not None else "rpm"
    distro_qualifier = (
        f"{distro.id}-{distro.version_id}" if distro is not None and distro.version_id else ""
    )
    qualifiers = _qualifiers(record.arch, distro_qualifier)
    if record.epoch is not None:
        qualifiers["epoch"] = str(record.epoch)
    namespace = distro.id if distro is not None else None
    purl = PackageURL("rpm", namespace, record.name, record.version, qualifiers)
    version = f"{record.epoch}:{record.version}" if record.epoch is not None else record.version
    return _os_package(ecosystem, record, version, purl, layer, path)


def _release(distro: Distro | None, ecosystems: dict[str, str]) -> str:
    """The distribution's release, when it is one of `ecosystems`' ("" otherwise)."""
    if distro is None or distro.id not in ecosystems:
        return ""
    return distro.version_id


def _qualifiers(arch: str, distro: str) -> dict[str, str]:
    qualifiers = {}
    if arch:
        qualifiers["arch"] = arch
    if distro:
        qualifiers["distro"] = distro
    return qualifiers


def _os_package(
    ecosystem: str, record: PackageRecord, version: str, purl: PackageURL, layer: str, path: str
) -> Package:
    return Package(
        ecosystem=ecosystem,
        name=record.name,
        version=version,
        purl=purl.to_string(),
        source_name=record.source_name,
        source_version=_with_epoch(record.source_version, record.epoch),
        layer=layer,
        path=path,
    )


def _with_epoch(version: str | None, epoch: int | None) -> str | None:
    if version is None or epoch is None:
        return version
    return f"{epoch}:{version}"
