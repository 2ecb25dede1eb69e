"""An image's layers applied in order, as a container runtime would: an upper layer's file
replaces a lower one's, a whiteout deletes a path (and all under it), an opaque directory hides
everything lower layers had under it. What is left is the image's `Inventory`."""

from __future__ import annotations

from collections.abc import Sequence

from pullthrough.scanning.inventory import os_release, purls
from pullthrough.scanning.inventory.records import FileKind, LayerContents, LayerFile
from pullthrough.scanning.model import Distro, Inventory, Package

_LEGACY_RPM = {
    FileKind.RPM_BERKELEY_DB: "an rpm Berkeley DB database",
    FileKind.RPM_NDB: "an rpm NDB database",
}


def merge(layers: Sequence[tuple[str, LayerContents]]) -> Inventory:
    """The inventory of an image whose layers, bottom first, are (digest, contents)."""
    present: dict[str, tuple[str, LayerFile]] = {}
    skipped: list[str] = []
    for digest, contents in layers:
        if contents.problem:
            skipped.append(f"layer {digest}: {contents.problem}")
        if contents.whiteouts or contents.opaque:
            deleted, opaque = set(contents.whiteouts), set(contents.opaque)
            for path in [p for p in present if _hidden(p, deleted, opaque)]:
                del present[path]
        for file in contents.files:
            present[file.path] = (digest, file)
    distro = _distro(present)
    packages: list[Package] = []
    for path in sorted(present):
        digest, file = present[path]
        if file.problem:
            skipped.append(f"{path} (layer {digest}): {file.problem}")
        elif file.kind in _LEGACY_RPM:
            skipped.append(
                f"{path} (layer {digest}): {_LEGACY_RPM[file.kind]}, which pullthrough does "
                f"not read (only rpm's SQLite database): this image's rpm packages are not listed"
            )
        for record in file.packages:
            packages.append(purls.package(record, file.kind, distro, digest, path))
    return Inventory(distro=distro, packages=tuple(packages), skipped=tuple(skipped))


def _hidden(path: str, deleted: set[str], opaque: set[str]) -> bool:
    """Whether a lower layer's file is gone: it or a directory above it was deleted, or a
    directory above it was made opaque (the root is "")."""
    if path in deleted:
        return True
    parent = path
    while parent:
        parent = parent.rpartition("/")[0]
        if parent in deleted or parent in opaque:
            return True
    return False


def _distro(present: dict[str, tuple[str, LayerFile]]) -> Distro | None:
    """`etc/os-release` when it is a file, else `usr/lib/os-release` (etc's is often a link)."""
    for path in os_release.PATHS:
        entry = present.get(path)
        if entry is not None and entry[1].distro is not None:
            return entry[1].distro
    return None
