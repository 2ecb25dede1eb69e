"""OSV records read from what a user hands `vulndb import`: one JSON file (a record, or a list
of records), a directory tree of them, or a zip archive such as OSV's `<ecosystem>/all.zip` —
a few at a time, so an archive of any size is never held in memory whole."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pullthrough.scanning.matching.osv import Advisory, OsvError, parse_record


@dataclass(frozen=True, slots=True)
class Record:
    advisory: Advisory
    document: str  # compact JSON


@dataclass(frozen=True, slots=True)
class Invalid:
    where: str  # the file (and archive member)
    problem: str


Read = Record | Invalid


def _from_json(text: str | bytes, where: str) -> Iterator[Read]:
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        yield Invalid(where, f"not JSON: {exc}")
        return
    for item in document if isinstance(document, list) else [document]:
        try:
            advisory = parse_record(item)
        except OsvError as exc:
            yield Invalid(where, str(exc))
            continue
        yield Record(advisory, json.dumps(item, separators=(",", ":"), ensure_ascii=False))


def _from_zip(path: Path, label: str) -> Iterator[Read]:
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.endswith(".json"):
                continue
            yield from _from_json(archive.read(member), f"{label}:{member.filename}")


def read_records(path: Path, label: str | None = None) -> Iterator[Read]:
    """Every record under `path`, in a stable order; what cannot be read is an `Invalid`
    (naming the zip as `label`, when given: the URL it was downloaded from)."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            if file.suffix == ".json":
                yield from _from_json(file.read_bytes(), str(file))
            elif file.suffix == ".zip":
                yield from _from_zip(file, str(file))
        return
    if zipfile.is_zipfile(path):
        yield from _from_zip(path, label or str(path))
        return
    yield from _from_json(path.read_bytes(), str(path))


def next_batch(records: Iterator[Read], size: int) -> list[Read]:
    """Up to `size` more of `records` (a blocking read: run off the event loop)."""
    batch: list[Read] = []
    for item in records:
        batch.append(item)
        if len(batch) >= size:
            break
    return batch
