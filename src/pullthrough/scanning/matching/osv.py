"""An OSV record (https://ossf.github.io/osv-schema/) as matching reads it: which packages of
which ecosystems it affects, over which version ranges, and how severe it is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Language ecosystems: a package is named the same everywhere, whatever the operating system.
LANGUAGE_ECOSYSTEMS = frozenset(
    {
        "PyPI",
        "npm",
        "Go",
        "Maven",
        "crates.io",
        "RubyGems",
        "NuGet",
        "Packagist",
        "Hex",
        "Pub",
    }
)
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


class OsvError(ValueError):
    """A record that is not OSV JSON; the message names the record and what is wrong."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # introduced, fixed, last_affected, limit
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM, SEMVER (GIT ranges are kept but never match an installed package)
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Severity:
    type: str  # CVSS_V2, CVSS_V3, CVSS_V4, or a distribution's own (Ubuntu)
    score: str  # the vector, or the distribution's word


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # as the record says: Debian:12, Alpine:v3.19, PyPI
    name: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: tuple[Severity, ...]  # this package's own, when it differs from the record's
    severity_text: str | None  # database_specific / ecosystem_specific severity or urgency

    @property
    def key(self) -> tuple[str, str]:
        return package_key(self.ecosystem, self.name)


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    modified: float  # UNIX seconds
    withdrawn: float | None  # when OSV withdrew it (UNIX seconds); it never matches then
    summary: str
    severity: tuple[Severity, ...]
    severity_text: str | None
    affected: tuple[Affected, ...]

    def keys(self) -> frozenset[tuple[str, str, str]]:
        """(ecosystem base, package name, ecosystem) of every package it names."""
        return frozenset((*a.key, a.ecosystem) for a in self.affected)


def ecosystem_base(ecosystem: str) -> str:
    """`Debian:12` → `Debian`; `PyPI` → `PyPI`."""
    return ecosystem.partition(":")[0].strip()


def normalize_name(base: str, name: str) -> str:
    """The name a package is looked up by: PyPI's normalized per PEP 503, others as written."""
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    base = ecosystem_base(ecosystem)
    return base, normalize_name(base, name)


def parse_time(text: object, what: str) -> float:
    """An RFC 3339 time (`2024-01-02T03:04:05Z`, fractions allowed) as UNIX seconds."""
    if not isinstance(text, str):
        raise OsvError(f"{what} is not an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise OsvError(f"{what} {text!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:  # OSV's times are UTC; a record that forgot the Z means it
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OsvError(f"{what} is not a list of strings")
    return tuple(value)


def _severity(value: object, what: str) -> tuple[Severity, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvError(f"{what} is not a list")
    found = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise OsvError(f"{what}: an entry has no type")
        score = item.get("score")
        if not isinstance(score, str):
            raise OsvError(f"{what}: the {item['type']} entry has no score")
        found.append(Severity(item["type"], score))
    return tuple(found)


def _severity_text(*documents: object) -> str | None:
    """The first word of severity a record's free-form parts hold: GHSA's `severity`, Debian's
    `urgency`, a distribution's `severity`."""
    for document in documents:
        if not isinstance(document, dict):
            continue
        for key in ("severity", "urgency"):
            value = document.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _ranges(value: object, what: str) -> tuple[Range, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvError(f"{what} is not a list")
    ranges = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise OsvError(f"{what}: a range has no type")
        events = item.get("events")
        if not isinstance(events, list) or not events:
            raise OsvError(f"{what}: a {item['type']} range has no events")
        parsed = []
        for event in events:
            if not isinstance(event, dict) or len(event) != 1:
                raise OsvError(f"{what}: an event is not one of {', '.join(EVENT_KINDS)}")
            ((kind, version),) = event.items()
            if kind not in EVENT_KINDS or not isinstance(version, str):
                raise OsvError(f"{what}: event {kind!r} is not one of {', '.join(EVENT_KINDS)}")
            parsed.append(Event(kind, version))
        ranges.append(Range(item["type"], tuple(parsed)))
    return tuple(ranges)


def _affected(value: object, record: str) -> tuple[Affected, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvError(f"{record}: affected is not a list")
    found = []
    for index, item in enumerate(value):
        what = f"{record}: affected[{index}]"
        if not isinstance(item, dict):
            raise OsvError(f"{what} is not an object")
        package = item.get("package")
        if package is None:
            continue  # a record may name only commits of a repository: nothing to match
        if not isinstance(package, dict):
            raise OsvError(f"{what}.package is not an object")
        ecosystem, name = package.get("ecosystem"), package.get("name")
        if not isinstance(ecosystem, str) or not isinstance(name, str) or not ecosystem or not name:
            raise OsvError(f"{what}.package has no ecosystem and name")
        found.append(
            Affected(
                ecosystem=ecosystem,
                name=name,
                ranges=_ranges(item.get("ranges"), f"{what}.ranges"),
                versions=_strings(item.get("versions"), f"{what}.versions"),
                severity=_severity(item.get("severity"), f"{what}.severity"),
                severity_text=_severity_text(
                    item.get("ecosystem_specific"), item.get("database_specific")
                ),
            )
        )
    return tuple(found)


def parse_record(document: Any) -> Advisory:
    """An OSV record from its JSON object; OsvError naming the record when it is not one."""
    if not isinstance(document, dict):
        raise OsvError("an OSV record is a JSON object")
    ident = document.get("id")
    if not isinstance(ident, str) or not ident:
        raise OsvError("an OSV record has no id")
    summary = document.get("summary") or document.get("details") or ""
    if not isinstance(summary, str):
        raise OsvError(f"{ident}: summary is not a string")
    withdrawn = document.get("withdrawn")
    withdrawn_at = None if withdrawn is None else parse_time(withdrawn, f"{ident}: withdrawn")
    return Advisory(
        id=ident,
        aliases=_strings(document.get("aliases"), f"{ident}: aliases"),
        modified=parse_time(document.get("modified"), f"{ident}: modified"),
        withdrawn=withdrawn_at,
        summary=summary.strip().splitlines()[0][:500] if summary.strip() else "",
        severity=_severity(document.get("severity"), f"{ident}: severity"),
        severity_text=_severity_text(document.get("database_specific")),
        affected=_affected(document.get("affected"), ident),
    )
