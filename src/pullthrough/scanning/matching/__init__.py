"""Which advisories affect an image: its packages looked up by (ecosystem base, name), distro
packages by their source package, each advisory's ranges read with the ecosystem's own version
ordering, and the result in `Finding`s with severity and the fixed version."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pullthrough.scanning.matching.distros import OsScope, os_scope
from pullthrough.scanning.matching.osv import (
    LANGUAGE_ECOSYSTEMS,
    Advisory,
    ecosystem_base,
    normalize_name,
)
from pullthrough.scanning.matching.ranges import affects
from pullthrough.scanning.matching.severity import rate
from pullthrough.scanning.model import SEVERITIES, Finding, Inventory, Package

# Distributions whose advisories name binary packages (rpm's); the others name source packages.
BINARY_KEYED = frozenset(
    {"Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE", "Mageia", "Photon OS"}
)


@dataclass(frozen=True, slots=True)
class Lookup:
    """One name a package is looked up by, at the version that name's advisories speak of."""

    package: Package
    base: str
    name: str
    version: str
    scope: OsScope | None  # the releases an OS package's advisories must be for

    def applies_to(self, ecosystem: str) -> bool:
        if self.scope is None:
            return ecosystem_base(ecosystem) == self.base
        return self.scope.applies_to(ecosystem)


def lookups(inventory: Inventory) -> list[Lookup]:
    """How each package of `inventory` is looked up. A dpkg or apk package by its source
    package at the source version (a binary package is never looked up by its own name then:
    an advisory about a source package of that name is about something else); an rpm by its
    name and its source rpm's; a language package by its (normalized) name."""
    found: list[Lookup] = []
    for package in inventory.packages:
        base = ecosystem_base(package.ecosystem)
        if base in LANGUAGE_ECOSYSTEMS:
            found.append(
                Lookup(package, base, normalize_name(base, package.name), package.version, None)
            )
            continue
        scope = os_scope(inventory.distro, package.ecosystem)
        if scope is None:
            continue
        if scope.base in BINARY_KEYED:
            names = {package.name, package.source_name or package.name}
            found.extend(Lookup(package, scope.base, n, package.version, scope) for n in names)
        else:
            name = package.source_name or package.name
            version = package.source_version or package.version
            found.append(Lookup(package, scope.base, name, version, scope))
    return found


def names_by_base(found: Iterable[Lookup]) -> dict[str, set[str]]:
    """What to ask the database for: the names to look up in each ecosystem base."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for lookup in found:
        wanted[lookup.base].add(lookup.name)
    return dict(wanted)


def match(found: Iterable[Lookup], advisories: Mapping[str, Advisory]) -> list[Finding]:
    """The findings of `found` against `advisories` (those the database holds for the names
    asked), most severe first. Withdrawn advisories never match."""
    by_key: dict[tuple[str, str], list[tuple[Advisory, int]]] = defaultdict(list)
    for advisory in advisories.values():
        if advisory.withdrawn is not None:
            continue
        for index, affected in enumerate(advisory.affected):
            by_key[affected.key].append((advisory, index))
    findings: dict[tuple[str, Package], Finding] = {}
    for lookup in found:
        for advisory, index in by_key.get((lookup.base, lookup.name), ()):
            affected = advisory.affected[index]
            if (advisory.id, lookup.package) in findings:
                continue
            if not lookup.applies_to(affected.ecosystem):
                continue
            verdict = affects(affected, lookup.base, lookup.version)
            if verdict is None:
                continue
            rating = rate(
                affected.severity or advisory.severity,
                (affected.severity_text, advisory.severity_text),
            )
            findings[(advisory.id, lookup.package)] = Finding(
                advisory=advisory.id,
                aliases=advisory.aliases,
                package=lookup.package,
                severity=rating.severity,
                score=rating.score,
                vector=rating.vector,
                fixed_version=verdict.fixed,
                summary=advisory.summary,
            )
    return sorted(
        findings.values(),
        key=lambda f: (SEVERITIES.index(f.severity), f.advisory, f.package.name, f.package.path),
    )
