"""rpm package databases as rpm 4.16+ writes them: an SQLite file whose `Packages` table holds
each installed package's header blob.

A header blob (rpm's `headerExport` form, without the 8-byte magic a package file carries) is
`il` and `dl` (big-endian int32: how many index entries, how many data bytes), `il` index entries
of 16 bytes (tag, type, offset into the data, count) and the data. The first entry is the
immutable region (tag 63, `RPMTAG_HEADERIMMUTABLE`), whose 16-byte trailer at the end of the
data points back over the whole index with a negative offset; rpm refuses a header without it.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

_NAME, _VERSION, _RELEASE, _EPOCH, _SUMMARY = 1000, 1001, 1002, 1003, 1004
_LICENSE, _ARCH, _SOURCERPM = 1014, 1022, 1044
_IMMUTABLE = 63
_INT32, _STRING, _BIN, _I18NSTRING = 4, 6, 7, 9

# The tables and indexes rpm 4.18's SQLite backend creates (`rpm --initdb`, read back with
# sqlite3's .schema): rpm takes a database that lacks one for broken.
_INDEX_TABLES = {
    # table: (key type, indexed by key, indexed by hnum)
    "Name": ("TEXT", True, False),
    "Basenames": ("TEXT", True, True),
    "Group": ("TEXT", True, False),
    "Requirename": ("TEXT", True, True),
    "Providename": ("TEXT", True, True),
    "Conflictname": ("TEXT", True, True),
    "Obsoletename": ("TEXT", True, True),
    "Triggername": ("TEXT", True, True),
    "Dirnames": ("TEXT", True, True),
    "Installtid": ("BLOB", False, False),
    "Sigmd5": ("BLOB", False, False),
    "Sha1header": ("TEXT", True, False),
    "Filetriggername": ("TEXT", True, True),
    "Transfiletriggername": ("TEXT", True, True),
    "Recommendname": ("TEXT", True, True),
    "Suggestname": ("TEXT", True, True),
    "Supplementname": ("TEXT", True, True),
    "Enhancename": ("TEXT", True, True),
}


def _schema() -> str:
    statements = [
        "CREATE TABLE IF NOT EXISTS 'Packages' "
        "(hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)"
    ]
    for table, (key_type, by_key, by_hnum) in _INDEX_TABLES.items():
        statements.append(
            f"CREATE TABLE IF NOT EXISTS '{table}' (key '{key_type}' NOT NULL, "
            "hnum INTEGER NOT NULL, idx INTEGER NOT NULL, "
            "FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))"
        )
        if by_key:
            statements.append(f"CREATE INDEX '{table}_key_idx' ON '{table}'(key ASC)")
        if by_hnum:
            statements.append(f"CREATE INDEX '{table}_hnum_idx' ON '{table}'(hnum ASC)")
    return ";\n".join(statements) + ";\n"


@dataclass(frozen=True)
class RpmPackage:
    name: str
    version: str
    release: str
    arch: str
    source_rpm: str  # e.g. openssl-3.0.7-24.el9.src.rpm
    epoch: int | None = None
    summary: str = ""
    license: str = "MIT"

    @property
    def evr(self) -> str:
        """`epoch:version-release`, the epoch only when there is one (as rpm -q prints it)."""
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"


def header_blob(package: RpmPackage) -> bytes:
    """The header of one installed package, as stored in the database's `Packages` table."""
    strings: list[tuple[int, int, bytes, int]] = [
        (_NAME, _STRING, package.name.encode() + b"\0", 1),
        (_VERSION, _STRING, package.version.encode() + b"\0", 1),
        (_RELEASE, _STRING, package.release.encode() + b"\0", 1),
        (_SUMMARY, _I18NSTRING, (package.summary or package.name).encode() + b"\0", 1),
        (_LICENSE, _STRING, package.license.encode() + b"\0", 1),
        (_ARCH, _STRING, package.arch.encode() + b"\0", 1),
        (_SOURCERPM, _STRING, package.source_rpm.encode() + b"\0", 1),
    ]
    if package.epoch is not None:
        strings.append((_EPOCH, _INT32, struct.pack(">i", package.epoch), 1))
    strings.sort(key=lambda entry: entry[0])
    entries: list[tuple[int, int, int, int]] = []
    data = bytearray()
    for tag, kind, value, count in strings:
        if kind == _INT32:
            data.extend(b"\0" * (-len(data) % 4))
        entries.append((tag, kind, len(data), count))
        data.extend(value)
    index_count = len(entries) + 1
    trailer_offset = len(data)
    data.extend(struct.pack(">iIiI", _IMMUTABLE, _BIN, -16 * index_count, 16))
    index = struct.pack(">iIiI", _IMMUTABLE, _BIN, trailer_offset, 16)
    index += b"".join(struct.pack(">iIiI", *entry) for entry in entries)
    return struct.pack(">II", index_count, len(data)) + index + bytes(data)


def write_rpmdb(path: Path, packages: list[RpmPackage]) -> bytes:
    """An rpmdb.sqlite holding `packages`, written at `path`; returns the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(_schema())
        for hnum, package in enumerate(packages, start=1):
            connection.execute(
                "INSERT INTO Packages (hnum, blob) VALUES (?, ?)", (hnum, header_blob(package))
            )
            connection.execute(
                "INSERT INTO Name (key, hnum, idx) VALUES (?, ?, 0)", (package.name, hnum)
            )
        connection.commit()
    finally:
        connection.close()
    return path.read_bytes()
