"""Matching an image's packages against OSV records: ranges read with each ecosystem's own
version ordering (univers), distro releases kept apart, distro packages by their source
package, withdrawn records ignored, severity from the CVSS vector."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pullthrough.scanning.matching import lookups, match
from pullthrough.scanning.matching.distros import os_scope
from pullthrough.scanning.matching.osv import Advisory, OsvError, parse_record
from pullthrough.scanning.model import Distro, Finding, Inventory, Package

V3_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
V3_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 5.4
V4_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:L/VA:N/SC:N/SI:N/SA:N"  # 8.8

DEBIAN_12 = Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
DEBIAN_11 = Distro("debian", "11", "Debian GNU/Linux 11 (bullseye)")
ALPINE_319 = Distro("alpine", "3.19.1", "Alpine Linux v3.19")
ROCKY_9 = Distro("rocky", "9.3", "Rocky Linux 9.3 (Blue Onyx)")
UBUNTU_2204 = Distro("ubuntu", "22.04", "Ubuntu 22.04.4 LTS")


def record(
    ident: str,
    ecosystem: str,
    name: str,
    events: list[dict[str, str]] | None = None,
    *,
    range_type: str = "ECOSYSTEM",
    versions: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {
        "id": ident,
        "modified": "2024-05-01T10:00:00Z",
        "summary": f"{name} is vulnerable",
        "affected": [affected],
        **extra,
    }


def fixed_at(version: str) -> list[dict[str, str]]:
    return [{"introduced": "0"}, {"fixed": version}]


def deb(
    name: str, version: str, source: str | None = None, source_version: str | None = None
) -> Package:
    return Package(
        "Debian", name, version, f"pkg:deb/debian/{name}@{version}", source, source_version
    )


def findings(
    distro: Distro | None, packages: list[Package], *records: dict[str, Any]
) -> list[Finding]:
    advisories: dict[str, Advisory] = {r["id"]: parse_record(r) for r in records}
    return match(lookups(Inventory(distro, tuple(packages))), advisories)


def summary(found: list[Finding]) -> list[tuple[str, str, str | None]]:
    return sorted((f.advisory, f.package.name, f.fixed_version) for f in found)


def test_a_debian_binary_package_matches_its_source_packages_advisory_with_the_fixed_version() -> (
    None
):
    libssl = deb("libssl3", "3.0.11-1~deb12u2", "openssl")
    openssl = deb("openssl", "3.0.11-1~deb12u2")
    dsa = record("DSA-5678-1", "Debian:12", "openssl", fixed_at("3.0.13-1~deb12u1"))

    found = findings(DEBIAN_12, [libssl, openssl], dsa)

    assert summary(found) == [
        ("DSA-5678-1", "libssl3", "3.0.13-1~deb12u1"),
        ("DSA-5678-1", "openssl", "3.0.13-1~deb12u1"),
    ]


def test_the_source_version_is_compared_when_it_differs_from_the_binary_version() -> None:
    # A binNMU: the binary is 2.9.14+dfsg-1.3+b1, built from source 2.9.14+dfsg-1.3, which is
    # what the advisory's versions are about.
    libxml = deb("libxml2", "2.9.14+dfsg-1.3+b1", "libxml2", "2.9.14+dfsg-1.3")
    fixed_in_binnmu = record("DSA-1", "Debian:12", "libxml2", fixed_at("2.9.14+dfsg-1.3+b1"))

    assert summary(findings(DEBIAN_12, [libxml], fixed_in_binnmu)) == [
        ("DSA-1", "libxml2", "2.9.14+dfsg-1.3+b1")
    ]


def test_a_binary_package_is_not_matched_by_an_advisory_naming_another_source_package() -> None:
    # bsdutils is built from util-linux: an advisory about a source package called bsdutils is
    # about something else.
    bsdutils = deb("bsdutils", "1:2.38.1-5+b1", "util-linux", "2.38.1-5")
    about_bsdutils = record("DEBIAN-CVE-2024-1", "Debian:12", "bsdutils", fixed_at("1:9.0-1"))
    about_util_linux = record("DEBIAN-CVE-2024-2", "Debian:12", "util-linux", fixed_at("2.38.1-6"))

    found = findings(DEBIAN_12, [bsdutils], about_bsdutils, about_util_linux)

    assert summary(found) == [("DEBIAN-CVE-2024-2", "bsdutils", "2.38.1-6")]


def test_an_advisory_for_another_debian_release_does_not_apply() -> None:
    zlib = deb("zlib1g", "1:1.2.13.dfsg-1", "zlib")
    for_11 = record("DLA-1", "Debian:11", "zlib", fixed_at("1:1.2.13.dfsg-9"))
    for_12 = record("DSA-2", "Debian:12", "zlib", fixed_at("1:1.2.13.dfsg-9"))

    assert summary(findings(DEBIAN_12, [zlib], for_11, for_12)) == [
        ("DSA-2", "zlib1g", "1:1.2.13.dfsg-9")
    ]
    assert summary(findings(DEBIAN_11, [zlib], for_11, for_12)) == [
        ("DLA-1", "zlib1g", "1:1.2.13.dfsg-9")
    ]


def test_debian_without_version_id_is_known_by_its_codename() -> None:
    sid = Distro("debian", "", "Debian GNU/Linux trixie/sid")
    zlib = deb("zlib1g", "1:1.3.dfsg-3", "zlib")
    for_13 = record("DSA-3", "Debian:13", "zlib", fixed_at("1:1.3.dfsg-4"))
    for_12 = record("DSA-4", "Debian:12", "zlib", fixed_at("1:1.3.dfsg-4"))

    assert summary(findings(sid, [zlib], for_13, for_12)) == [("DSA-3", "zlib1g", "1:1.3.dfsg-4")]


def test_os_packages_of_an_image_without_a_known_release_match_nothing() -> None:
    zlib = deb("zlib1g", "1:1.2.13.dfsg-1", "zlib")
    any_release = record("DSA-2", "Debian:12", "zlib", fixed_at("1:1.2.13.dfsg-9"))

    assert findings(None, [zlib], any_release) == []


@pytest.mark.parametrize(
    ("installed", "fixed", "affected"),
    [
        ("1:1.0-1", "2.0-1", False),  # an epoch outranks any upstream version
        ("1.9-1", "1:1.0-1", True),
        ("2.0~rc1-1", "2.0-1", True),  # ~ sorts before the release
        ("2.0-1", "2.0~rc1-1", False),
        ("2.0-1+deb12u10", "2.0-1+deb12u9", False),  # numerically, not as text
        ("2.0-1+deb12u9", "2.0-1+deb12u10", True),
    ],
)
def test_debian_versions_are_ordered_by_debian_rules(
    installed: str, fixed: str, affected: bool
) -> None:
    package = deb("tool", installed)
    advisory = record("DSA-9", "Debian:12", "tool", fixed_at(fixed))

    assert bool(findings(DEBIAN_12, [package], advisory)) is affected


@pytest.mark.parametrize(
    ("installed", "fixed", "affected"),
    [
        ("1.36.1-r15", "1.36.1-r9", False),  # r15 after r9: revisions are numbers
        ("1.36.1-r9", "1.36.1-r15", True),
        ("1.36.1-r15", "1.36.1-r16", True),
        ("1.36.1-r16", "1.36.1-r16", False),
        ("1.36.0-r20", "1.36.1-r0", True),
    ],
)
def test_alpine_revisions_are_ordered_by_apk_rules(
    installed: str, fixed: str, affected: bool
) -> None:
    busybox = Package("Alpine", "ssl_client", installed, "pkg:apk/alpine/ssl_client", "busybox")
    advisory = record("ALPINE-CVE-1", "Alpine:v3.19", "busybox", fixed_at(fixed))

    assert bool(findings(ALPINE_319, [busybox], advisory)) is affected


def test_an_alpine_advisory_applies_to_its_minor_release_only() -> None:
    busybox = Package("Alpine", "busybox", "1.36.1-r15", "pkg:apk/alpine/busybox", "busybox")
    for_318 = record("ALPINE-1", "Alpine:v3.18", "busybox", fixed_at("1.36.1-r20"))
    for_319 = record("ALPINE-2", "Alpine:v3.19", "busybox", fixed_at("1.36.1-r20"))

    assert summary(findings(ALPINE_319, [busybox], for_318, for_319)) == [
        ("ALPINE-2", "busybox", "1.36.1-r20")
    ]


@pytest.mark.parametrize(
    ("installed", "fixed", "affected"),
    [
        ("1:3.0.7-24.el9", "1:3.0.7-25.el9", True),
        ("1:3.0.7-24.el9", "1:3.0.7-3.el9", False),  # release 24 after 3
        ("3.0.7-24.el9", "1:3.0.7-3.el9", True),  # no epoch is epoch 0
        ("1:3.0.7-24.el9", "3.1.0-1.el9", False),
    ],
)
def test_rpm_versions_are_ordered_by_epoch_version_release(
    installed: str, fixed: str, affected: bool
) -> None:
    libs = Package(
        "Rocky Linux", "openssl-libs", installed, "pkg:rpm/rocky/openssl-libs", "openssl"
    )
    advisory = record("RLSA-2024:1", "Rocky Linux:9", "openssl-libs", fixed_at(fixed))

    assert bool(findings(ROCKY_9, [libs], advisory)) is affected


def test_rpm_advisories_match_by_binary_or_source_rpm_name_in_the_same_major_release() -> None:
    libs = Package(
        "Rocky Linux", "openssl-libs", "1:3.0.7-24.el9", "pkg:rpm/rocky/openssl-libs", "openssl"
    )
    by_source = record("RLSA-1", "Rocky Linux:9", "openssl", fixed_at("1:3.0.7-25.el9"))
    other_major = record("RLSA-2", "Rocky Linux:8", "openssl-libs", fixed_at("1:3.0.7-25.el9"))
    red_hat = record(
        "RHSA-3", "Red Hat:enterprise_linux:9::baseos", "openssl-libs", fixed_at("1:3.0.7-26.el9")
    )

    assert summary(findings(ROCKY_9, [libs], by_source, other_major, red_hat)) == [
        ("RLSA-1", "openssl-libs", "1:3.0.7-25.el9")
    ]
    rhel = Distro("rhel", "9.4", "Red Hat Enterprise Linux 9.4 (Plow)")
    rhel_libs = Package("Red Hat", "openssl-libs", "1:3.0.7-24.el9", "pkg:rpm/redhat/x", "openssl")
    assert summary(findings(rhel, [rhel_libs], by_source, other_major, red_hat)) == [
        ("RHSA-3", "openssl-libs", "1:3.0.7-26.el9")
    ]


def test_ubuntu_advisories_apply_to_their_release_and_not_to_ubuntu_pro() -> None:
    curl = Package("Ubuntu", "libcurl4", "7.81.0-1ubuntu1.15", "pkg:deb/ubuntu/libcurl4", "curl")
    lts = record("USN-1", "Ubuntu:22.04:LTS", "curl", fixed_at("7.81.0-1ubuntu1.16"))
    pro = record("USN-2", "Ubuntu:Pro:22.04:LTS", "curl", fixed_at("7.81.0-1ubuntu1.16+esm1"))
    older = record("USN-3", "Ubuntu:20.04:LTS", "curl", fixed_at("7.81.0-1ubuntu1.16"))

    assert summary(findings(UBUNTU_2204, [curl], lts, pro, older)) == [
        ("USN-1", "libcurl4", "7.81.0-1ubuntu1.16")
    ]


@pytest.mark.parametrize(
    ("installed", "affected"),
    [("4.2a1", True), ("4.2rc1", True), ("4.2", False), ("4.1.9", False), ("4.2.post1", False)],
)
def test_pypi_versions_follow_pep_440_with_pre_releases(installed: str, affected: bool) -> None:
    django = Package("PyPI", "Django", installed, f"pkg:pypi/django@{installed}")
    advisory = record(
        "GHSA-aaaa-bbbb-cccc", "PyPI", "django", [{"introduced": "4.2a1"}, {"fixed": "4.2"}]
    )

    assert bool(findings(DEBIAN_12, [django], advisory)) is affected


def test_pypi_names_are_compared_normalized() -> None:
    package = Package("PyPI", "Foo.Bar_baz", "1.0", "pkg:pypi/foo-bar-baz@1.0")
    advisory = record("PYSEC-1", "PyPI", "foo-bar-BAZ", fixed_at("1.1"))

    assert summary(findings(None, [package], advisory)) == [("PYSEC-1", "Foo.Bar_baz", "1.1")]


@pytest.mark.parametrize(
    ("installed", "affected"),
    [("4.17.20", True), ("4.17.21", False), ("4.17.21-beta.1", True), ("5.0.0", False)],
)
def test_npm_versions_follow_semver(installed: str, affected: bool) -> None:
    lodash = Package("npm", "lodash", installed, f"pkg:npm/lodash@{installed}")
    advisory = record(
        "GHSA-35jh-r3h4-6jhm",
        "npm",
        "lodash",
        [{"introduced": "0"}, {"fixed": "4.17.21"}],
        range_type="SEMVER",
    )

    assert bool(findings(None, [lodash], advisory)) is affected


@pytest.mark.parametrize(
    ("installed", "fixed"),
    [("1.0.5", "1.2.0"), ("1.2.0", None), ("2.1.0", "2.3.0"), ("2.3.0", None), ("0.9.0", None)],
)
def test_a_version_gets_the_fixed_event_of_the_range_it_falls_in(
    installed: str, fixed: str | None
) -> None:
    package = Package("npm", "left-pad", installed, "pkg:npm/left-pad")
    advisory = record(
        "GHSA-two-ranges",
        "npm",
        "left-pad",
        [{"introduced": "1.0.0"}, {"fixed": "1.2.0"}, {"introduced": "2.0.0"}, {"fixed": "2.3.0"}],
        range_type="SEMVER",
    )

    found = findings(None, [package], advisory)

    affected = installed in ("1.0.5", "2.1.0")
    assert [f.fixed_version for f in found] == ([fixed] if affected else [])


@pytest.mark.parametrize(
    ("installed", "affected"), [("1.5.0", True), ("1.5.1", False), ("0.9", False)]
)
def test_last_affected_is_included_and_has_no_fix(installed: str, affected: bool) -> None:
    package = Package("PyPI", "tool", installed, "pkg:pypi/tool")
    advisory = record(
        "PYSEC-2", "PyPI", "tool", [{"introduced": "1.0"}, {"last_affected": "1.5.0"}]
    )

    found = findings(None, [package], advisory)

    assert [(f.advisory, f.fixed_version) for f in found] == (
        [("PYSEC-2", None)] if affected else []
    )


@pytest.mark.parametrize(("installed", "affected"), [("1.9", True), ("2.0", False), ("2.5", False)])
def test_a_limit_bounds_the_range(installed: str, affected: bool) -> None:
    package = Package("PyPI", "tool", installed, "pkg:pypi/tool")
    advisory = record("PYSEC-3", "PyPI", "tool", [{"introduced": "0"}, {"limit": "2.0"}])

    assert bool(findings(None, [package], advisory)) is affected


def test_listed_versions_match_exactly() -> None:
    listed = record("GHSA-listed", "PyPI", "tool", versions=["1.0", "1.1"])
    for installed, affected in (("1.1", True), ("1.2", False), ("1.0.1", False)):
        package = Package("PyPI", "tool", installed, "pkg:pypi/tool")
        assert bool(findings(None, [package], listed)) is affected, installed


def test_a_withdrawn_record_never_matches() -> None:
    package = Package("PyPI", "tool", "1.0", "pkg:pypi/tool")
    withdrawn = record(
        "GHSA-gone", "PyPI", "tool", fixed_at("2.0"), withdrawn="2024-06-01T00:00:00Z"
    )

    assert findings(None, [package], withdrawn) == []


def test_severity_comes_from_a_cvss_v3_or_v4_vector_and_else_from_the_records_word() -> None:
    package = Package("PyPI", "tool", "1.0", "pkg:pypi/tool")
    v3 = record(
        "A-V3",
        "PyPI",
        "tool",
        fixed_at("2.0"),
        severity=[{"type": "CVSS_V3", "score": V3_CRITICAL}],
    )
    v4 = record(
        "B-V4", "PyPI", "tool", fixed_at("2.0"), severity=[{"type": "CVSS_V4", "score": V4_HIGH}]
    )
    both = record(
        "C-BOTH",
        "PyPI",
        "tool",
        fixed_at("2.0"),
        severity=[{"type": "CVSS_V4", "score": V4_HIGH}, {"type": "CVSS_V3", "score": V3_MEDIUM}],
    )
    worded = record(
        "D-GHSA", "PyPI", "tool", fixed_at("2.0"), database_specific={"severity": "MODERATE"}
    )
    nothing = record("E-NONE", "PyPI", "tool", fixed_at("2.0"))

    found = {
        f.advisory: (f.severity, f.score, f.vector)
        for f in findings(None, [package], v3, v4, both, worded, nothing)
    }

    assert found == {
        "A-V3": ("CRITICAL", 9.8, V3_CRITICAL),
        "B-V4": ("HIGH", 8.8, V4_HIGH),
        "C-BOTH": ("MEDIUM", 5.4, V3_MEDIUM),
        "D-GHSA": ("MEDIUM", None, None),
        "E-NONE": ("UNDEFINED", None, None),
    }


def test_debian_urgency_is_the_severity_when_there_is_no_vector() -> None:
    zlib = deb("zlib1g", "1:1.2.13.dfsg-1", "zlib")
    advisory = record("DEBIAN-CVE-2023-1", "Debian:12", "zlib", fixed_at("1:1.2.13.dfsg-2"))
    advisory["affected"][0]["ecosystem_specific"] = {"urgency": "high"}

    (finding,) = findings(DEBIAN_12, [zlib], advisory)

    assert (finding.severity, finding.score) == ("HIGH", None)


def test_findings_come_most_severe_first_with_aliases_and_summary() -> None:
    package = Package("PyPI", "tool", "1.0", "pkg:pypi/tool")
    low = record("A-LOW", "PyPI", "tool", fixed_at("2.0"), database_specific={"severity": "LOW"})
    critical = record(
        "Z-CRIT",
        "PyPI",
        "tool",
        fixed_at("2.0"),
        aliases=["CVE-2024-0001"],
        severity=[{"type": "CVSS_V3", "score": V3_CRITICAL}],
    )

    found = findings(None, [package], low, critical)

    assert [(f.advisory, f.severity) for f in found] == [("Z-CRIT", "CRITICAL"), ("A-LOW", "LOW")]
    assert found[0].aliases == ("CVE-2024-0001",)
    assert found[0].summary == "tool is vulnerable"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"modified": "2024-01-01T00:00:00Z"}, "has no id"),
        ({"id": "X-1"}, "X-1: modified"),
        ({"id": "X-1", "modified": "yesterday"}, "not an RFC 3339 time"),
        (
            {
                "id": "X-1",
                "modified": "2024-01-01T00:00:00Z",
                "affected": [{"package": {"name": "a"}}],
            },
            "X-1: affected[0].package has no ecosystem and name",
        ),
    ],
)
def test_a_record_that_is_not_osv_is_refused_with_what_is_wrong(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(OsvError, match=re.escape(message)):
        parse_record(document)


@pytest.mark.parametrize(
    ("distro", "ecosystem", "applies"),
    [
        (Distro("almalinux", "9.4"), "AlmaLinux:9", True),
        (Distro("almalinux", "9.4"), "AlmaLinux:8", False),
        (Distro("rhel", "9.2"), "Red Hat:rhel_eus:9.2::baseos", True),
        (Distro("rhel", "9.4"), "Red Hat:rhel_eus:9.2::baseos", False),
        (Distro("rhel", "9.4"), "Red Hat:openshift:9::el9", False),
        (Distro("sles", "15.5"), "SUSE:Linux Enterprise Server 15 SP5", True),
        (Distro("sles", "15.5"), "SUSE:Linux Enterprise Module for Basesystem 15 SP5", True),
        (Distro("sles", "15.5"), "SUSE:Linux Enterprise Server 15 SP4", False),
        (Distro("opensuse-leap", "15.5"), "openSUSE:Leap 15.5", True),
        (Distro("opensuse-leap", "15.5"), "openSUSE:Leap 15.6", False),
        (Distro("opensuse-tumbleweed", "20240501"), "openSUSE:Tumbleweed", True),
        (Distro("wolfi", "20230201"), "Wolfi", True),
        (Distro("alpine", "3.19.1"), "Alpine:v3.1", False),
        (Distro("ubuntu", "24.04"), "Ubuntu:24.04:LTS", True),
        (Distro("ubuntu", "23.10"), "Ubuntu:23.10", True),
    ],
)
def test_which_releases_an_advisory_applies_to(
    distro: Distro, ecosystem: str, applies: bool
) -> None:
    scope = os_scope(distro, "")

    assert scope is not None
    assert scope.applies_to(ecosystem) is applies
