"""dpkg's database: `var/lib/dpkg/status`, and distroless images' `var/lib/dpkg/status.d/`
(one file per package, without Status lines). Each installed package with its source package:
Debian's advisories are keyed by source package."""

from __future__ import annotations

import re

from pullthrough.scanning.inventory.records import PackageRecord

STATUS = "var/lib/dpkg/status"
STATUS_DIR = "var/lib/dpkg/status.d/"
# distroless keeps each package's file list and checksums beside its stanza.
_NOT_STANZAS = (".md5sums", ".list", ".conffiles")
_SOURCE = re.compile(r"(?P<name>[^\s(]+)(?:\s*\((?P<version>[^)\s]+)\))?")


def is_dpkg_database(path: str) -> bool:
    if path == STATUS:
        return True
    if not path.startswith(STATUS_DIR):
        return False
    name = path[len(STATUS_DIR) :]
    return bool(name) and "/" not in name and not name.endswith(_NOT_STANZAS)


def parse_dpkg_status(text: str) -> list[PackageRecord]:
    """Every installed package of a status file (or a status.d file): `Status` ends in
    `installed` (a stanza without one, as distroless writes them, counts as installed)."""
    packages = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields = _fields(stanza)
        name, version = fields.get("Package"), fields.get("Version")
        if not name or not version:
            continue
        status = fields.get("Status")
        if status is not None and status.split()[-1:] != ["installed"]:
            continue
        source_name, source_version = name, version
        match = _SOURCE.fullmatch(fields.get("Source", ""))
        if match:
            source_name = match["name"]
            source_version = match["version"] or version
        packages.append(
            PackageRecord(
                name=name,
                version=version,
                arch=fields.get("Architecture", ""),
                source_name=source_name,
                source_version=source_version,
            )
        )
    return packages


def _fields(stanza: str) -> dict[str, str]:
    fields = {}
    for line in stanza.splitlines():
        if not line or line[0] in " \t#":
            continue  # a continuation line (Description, Conffiles) or a comment
        key, colon, value = line.partition(":")
        if colon:
            fields[key.strip()] = value.strip()
    return fields
