"""Installed Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and
`*.egg-info` files. Only the header block is read (the body is the project's description)."""

from __future__ import annotations

from pullthrough.scanning.inventory.records import PackageRecord


def is_python_metadata(path: str) -> bool:
    return (
        path.endswith(".dist-info/METADATA")
        or path.endswith(".egg-info/PKG-INFO")
        or path.endswith(".egg-info")
    )


def parse_python_metadata(text: str) -> list[PackageRecord]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers
        if line[0] in " \t":
            continue
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip().lower(), value.strip())
    name, version = fields.get("name"), fields.get("version")
    if not name or not version:
        return []
    return [PackageRecord(name=name, version=version)]
