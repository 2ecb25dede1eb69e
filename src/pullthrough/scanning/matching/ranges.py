"""Whether a version lies in an OSV record's ranges, with each ecosystem's own ordering taken
from `univers` (Debian epochs and `~`, Alpine `-r` revisions, rpm epoch:version-release, PEP 440,
semver): never compared here by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from univers.versions import (
    AlpineLinuxVersion,
    ComposerVersion,
    DebianVersion,
    GolangVersion,
    InvalidVersion,
    MavenVersion,
    NugetVersion,
    PypiVersion,
    RpmVersion,
    RubygemsVersion,
    SemverVersion,
    Version,
)

from pullthrough.scanning.matching.osv import Affected, Event, Range

# univers' class for each OSV ecosystem (by its base, `Debian` of `Debian:12`).
VERSION_CLASSES: dict[str, type[Version]] = {
    "Debian": DebianVersion,
    "Ubuntu": DebianVersion,
    "Alpine": AlpineLinuxVersion,
    "Wolfi": AlpineLinuxVersion,
    "Chainguard": AlpineLinuxVersion,
    "Red Hat": RpmVersion,
    "Rocky Linux": RpmVersion,
    "AlmaLinux": RpmVersion,
    "openSUSE": RpmVersion,
    "SUSE": RpmVersion,
    "Mageia": RpmVersion,
    "Photon OS": RpmVersion,
    "PyPI": PypiVersion,
    "npm": SemverVersion,
    "crates.io": SemverVersion,
    "Go": GolangVersion,
    "Maven": MavenVersion,
    "NuGet": NugetVersion,
    "RubyGems": RubygemsVersion,
    "Packagist": ComposerVersion,
}

Parse = Callable[[str], Version]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The package is affected; `fixed` is the first version of its range that is not."""

    fixed: str | None


def _parser(range_type: str, base: str) -> Parse | None:
    if range_type == "SEMVER":
        return lambda text: SemverVersion(text.removeprefix("v"))
    if range_type == "ECOSYSTEM":
        return VERSION_CLASSES.get(base)
    return None  # GIT ranges name commits, not installed versions


def _in_range(version: Version, parse: Parse, events: Sequence[Event]) -> Verdict | None:
    """OSV's evaluation of one range: events in version order; introduced opens, fixed and
    last_affected close; limits bound the range from above. Only `<` compares versions: some
    univers classes (Alpine's) define `<` and `>` but leave `>=` to a comparison of the text."""
    limits = [parse(e.version) for e in events if e.kind == "limit" and e.version != "*"]
    if limits and not any(version < limit for limit in limits):
        return None
    # introduced "0" means "from the first version": before every other event.
    first = [e for e in events if e.kind == "introduced" and e.version == "0"]
    rest = [e for e in events if e.kind != "limit" and e not in first]
    ordered = first + sorted(rest, key=lambda e: parse(e.version))
    affected = False
    fixed: str | None = None
    for event in ordered:
        if event.kind == "introduced":
            if event.version == "0" or not version < parse(event.version):
                affected, fixed = True, None
        elif event.kind == "fixed":
            if not version < parse(event.version):
                affected = False
            elif affected and fixed is None:
                fixed = event.version
        elif event.kind == "last_affected" and parse(event.version) < version:
            affected = False
    return Verdict(fixed) if affected else None


def _range_verdict(version: str, base: str, rng: Range) -> Verdict | None:
    parse = _parser(rng.type, base)
    if parse is None:
        return None
    try:
        return _in_range(parse(version), parse, rng.events)
    except (InvalidVersion, ValueError, TypeError):
        # A version this ecosystem's ordering cannot read (in the image or the record): the
        # range says nothing about it; an exact `versions` entry still may.
        return None


def affects(affected: Affected, base: str, version: str) -> Verdict | None:
    """Whether `version` of the package `affected` names is affected, and its fix."""
    verdicts = [v for v in (_range_verdict(version, base, r) for r in affected.ranges) if v]
    if verdicts:
        fixed = [v.fixed for v in verdicts if v.fixed is not None]
        return Verdict(fixed[0] if fixed else None)
    if version in affected.versions:
        return Verdict(_first_fix_above(affected, base, version))
    return None


def _first_fix_above(affected: Affected, base: str, version: str) -> str | None:
    """For a version listed by name: the lowest `fixed` event of its ecosystem above it."""
    parse = VERSION_CLASSES.get(base)
    if parse is None:
        return None
    try:
        current = parse(version)
        fixes = sorted(
            (parse(e.version), e.version)
            for r in affected.ranges
            if r.type == "ECOSYSTEM"
            for e in r.events
            if e.kind == "fixed"
        )
    except (InvalidVersion, ValueError, TypeError):
        return None
    return next((text for parsed, text in fixes if current < parsed), None)
