"""rpm's database. rpm 4.16 and later keep it in SQLite (`var/lib/rpm/rpmdb.sqlite`, or
`usr/lib/sysimage/rpm/rpmdb.sqlite` on newer distributions): table `Packages`, one header blob
per installed package, parsed here. The older Berkeley DB (`Packages`) and NDB (`Packages.db`)
formats are not read: the inventory reports them as skipped.

A header blob: `il` and `dl` (big-endian uint32: index entries, data bytes), `il` entries of 16
bytes (tag, type, offset into the data, count), then the data (rpm's lib/header.c).
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from pullthrough.scanning.inventory.records import FileKind, PackageRecord

SQLITE_PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
WAL_PATHS = tuple(f"{path}-wal" for path in SQLITE_PATHS)
LEGACY_PATHS = {
    "var/lib/rpm/Packages": FileKind.RPM_BERKELEY_DB,
    "usr/lib/sysimage/rpm/Packages": FileKind.RPM_BERKELEY_DB,
    "var/lib/rpm/Packages.db": FileKind.RPM_NDB,
    "usr/lib/sysimage/rpm/Packages.db": FileKind.RPM_NDB,
}

_NAME, _VERSION, _RELEASE, _EPOCH, _ARCH, _SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
_WANTED = {_NAME, _VERSION, _RELEASE, _EPOCH, _ARCH, _SOURCERPM}
_INT32, _STRING, _I18NSTRING = 4, 6, 9
_ENTRY = struct.Struct(">iIiI")
# Not packages: the public keys rpm imported are stored as headers named gpg-pubkey.
_PSEUDO_PACKAGES = frozenset({"gpg-pubkey"})


class RpmHeaderError(ValueError):
    """A header blob that is not one."""


def parse_header(blob: bytes) -> PackageRecord | None:
    """The package one header describes (None for rpm's pseudo-packages)."""
    if len(blob) < 8:
        raise RpmHeaderError("an rpm header shorter than its counts")
    index_count, data_length = struct.unpack_from(">II", blob, 0)
    data_start = 8 + 16 * index_count
    if index_count > 100_000 or data_start + data_length > len(blob):
        raise RpmHeaderError("an rpm header whose counts exceed its length")
    data = blob[data_start : data_start + data_length]
    values: dict[int, str | int] = {}
    for position in range(index_count):
        tag, kind, offset, count = _ENTRY.unpack_from(blob, 8 + 16 * position)
        if tag not in _WANTED or offset < 0 or offset >= len(data) or count < 1:
            continue
        if kind in (_STRING, _I18NSTRING):
            end = data.find(b"\0", offset)
            if end < 0:
                raise RpmHeaderError(f"an rpm header string (tag {tag}) without its end")
            values[tag] = data[offset:end].decode("utf-8", "replace")
        elif kind == _INT32 and offset + 4 <= len(data):
            values[tag] = struct.unpack_from(">i", data, offset)[0]
    name, version, release = values.get(_NAME), values.get(_VERSION), values.get(_RELEASE)
    if not isinstance(name, str) or not isinstance(version, str) or not isinstance(release, str):
        raise RpmHeaderError("an rpm header without name, version and release")
    if name in _PSEUDO_PACKAGES:
        return None
    epoch = values.get(_EPOCH)
    source_name, source_version = _source(values.get(_SOURCERPM))
    return PackageRecord(
        name=name,
        version=f"{version}-{release}",
        arch=str(values.get(_ARCH, "")),
        source_name=source_name or name,
        source_version=source_version or f"{version}-{release}",
        epoch=epoch if isinstance(epoch, int) else None,
    )


def _source(source_rpm: str | int | None) -> tuple[str | None, str | None]:
    """`openssl-3.0.7-24.el9.src.rpm` → (`openssl`, `3.0.7-24.el9`)."""
    if not isinstance(source_rpm, str):
        return None, None
    stem = source_rpm.removesuffix(".rpm")
    stem = stem.rpartition(".")[0] if stem.endswith((".src", ".nosrc")) else stem
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return None, None
    return parts[0], f"{parts[1]}-{parts[2]}"


def read_rpmdb_sqlite(path: Path) -> list[PackageRecord]:
    """Every installed package of an rpmdb.sqlite file (opened read-only, as found)."""
    uri = f"{path.as_uri()}?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute("SELECT blob FROM Packages ORDER BY hnum")
        packages = []
        for (blob,) in rows:
            record = parse_header(bytes(blob))
            if record is not None:
                packages.append(record)
        return packages
    finally:
        connection.close()
