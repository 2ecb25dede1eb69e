"""What one layer holds for scanning, as the store keeps it: the package database files found in
it (parsed into records that do not depend on the distribution yet), its whiteouts and its
opaque directories. `LayerContents.to_json` / `from_json` are the stored document."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pullthrough.scanning.model import Distro

# Bumped when the reader changes what it finds: stored layers of an older format are read again.
FORMAT = 1


class FileKind(StrEnum):
    OS_RELEASE = "os-release"
    DPKG = "dpkg"
    APK = "apk"
    RPM = "rpm"
    RPM_BERKELEY_DB = "rpm-bdb"
    RPM_NDB = "rpm-ndb"
    # rpmdb.sqlite's write-ahead log: not empty only when rpm stopped before it was merged in.
    RPM_WAL = "rpm-wal"
    PYTHON = "python"
    NPM = "npm"
    # Something other than a regular file at a package database's path (a symlink, a directory):
    # it hides what lower layers had there, and lists nothing.
    NOT_A_FILE = "not-a-file"


@dataclass(frozen=True, slots=True)
class PackageRecord:
    """One package as its database lists it, before the image's distribution is known."""

    name: str
    version: str  # dpkg and apk as spelled; rpm `version-release`; PyPI and npm as spelled
    arch: str = ""
    source_name: str | None = None
    source_version: str | None = None
    epoch: int | None = None  # rpm only

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.arch:
            document["arch"] = self.arch
        if self.source_name is not None:
            document["source_name"] = self.source_name
        if self.source_version is not None:
            document["source_version"] = self.source_version
        if self.epoch is not None:
            document["epoch"] = self.epoch
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> PackageRecord:
        return cls(
            name=str(document["name"]),
            version=str(document["version"]),
            arch=str(document.get("arch", "")),
            source_name=document.get("source_name"),
            source_version=document.get("source_version"),
            epoch=document.get("epoch"),
        )


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A package database file (or os-release) found in a layer, with what it lists; `problem`
    says why it could not be read (too large, malformed), and such a file lists nothing."""

    path: str  # relative to the image root, no leading slash
    kind: FileKind
    packages: tuple[PackageRecord, ...] = ()
    distro: Distro | None = None
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"path": self.path, "kind": self.kind.value}
        if self.packages:
            document["packages"] = [p.to_json() for p in self.packages]
        if self.distro is not None:
            document["distro"] = {
                "id": self.distro.id,
                "version_id": self.distro.version_id,
                "pretty_name": self.distro.pretty_name,
            }
        if self.problem:
            document["problem"] = self.problem
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> LayerFile:
        distro = document.get("distro")
        return cls(
            path=str(document["path"]),
            kind=FileKind(document["kind"]),
            packages=tuple(PackageRecord.from_json(p) for p in document.get("packages", ())),
            distro=Distro(**distro) if distro else None,
            problem=str(document.get("problem", "")),
        )


@dataclass(frozen=True, slots=True)
class LayerContents:
    """A layer's package database files, the paths its whiteouts delete and the directories it
    makes opaque; `problem` is set when the layer itself could not be read."""

    files: tuple[LayerFile, ...] = ()
    whiteouts: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "files": [f.to_json() for f in self.files],
            "whiteouts": list(self.whiteouts),
            "opaque": list(self.opaque),
        }
        if self.problem:
            document["problem"] = self.problem
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> LayerContents:
        return cls(
            files=tuple(LayerFile.from_json(f) for f in document.get("files", ())),
            whiteouts=tuple(str(w) for w in document.get("whiteouts", ())),
            opaque=tuple(str(o) for o in document.get("opaque", ())),
            problem=str(document.get("problem", "")),
        )
