"""The vulnerability database in the metadata database, over SQLite and PostgreSQL: imports of
a file, a directory and an `all.zip`, idempotent; a newer `modified` replaces; the revision
moves only when something changed; `sync` against a local server sends ETags back and
downloads only archives that changed; `status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pullthrough.metadata import schema
from pullthrough.metadata.revisions import VULNDB
from pullthrough.metadata.store import MetadataStore
from pullthrough.metadata.vulndb import VulnDbStore
from pullthrough.scanning.model import Distro, Inventory, Package
from pullthrough.scanning.vulndb import VulnerabilityDatabase
from tests.unit import space_support, vulndb_support
from tests.unit.vulndb_support import ArchiveServer, osv, zipped

metadata = space_support.metadata
archive_server = vulndb_support.archive_server

DEBIAN_12 = Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
LIBSSL = Package("Debian", "libssl3", "3.0.11-1~deb12u2", "pkg:deb/debian/libssl3", "openssl")
TOOL = Package("PyPI", "Tool", "1.0", "pkg:pypi/tool@1.0")
IMAGE = Inventory(DEBIAN_12, (LIBSSL, TOOL))


async def revision(store: MetadataStore) -> int:
    table = schema.revisions
    async with store.engine.connect() as conn:
        value = await conn.scalar(select(table.c.value).where(table.c.name == VULNDB))
    return int(value or 0)


def found(findings: list[Any]) -> list[tuple[str, str, str | None]]:
    return sorted((f.advisory, f.package.name, f.fixed_version) for f in findings)


DSA = osv("DSA-5678-1", "Debian:12", "openssl", "3.0.13-1~deb12u1")
DLA = osv("DLA-1111-1", "Debian:11", "openssl", "3.0.13-1~deb11u1")
PYSEC = osv("PYSEC-2024-1", "PyPI", "tool", "1.1")
GHSA = osv("GHSA-xxxx-yyyy-zzzz", "npm", "left-pad", "2.0.0")


async def test_a_file_a_directory_and_a_zip_are_imported(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    single = tmp_path / "DSA-5678-1.json"
    single.write_text(json.dumps(DSA))
    tree = tmp_path / "tree"
    (tree / "pypi").mkdir(parents=True)
    (tree / "pypi" / "PYSEC-2024-1.json").write_text(json.dumps(PYSEC))
    (tree / "debian-11.json").write_text(json.dumps([DLA]))  # a list of records
    (tree / "README.txt").write_text("not a record")
    archive = tmp_path / "all.zip"
    archive.write_bytes(zipped(GHSA))

    from_file = await db.import_path(single)
    from_tree = await db.import_path(tree)
    from_zip = await db.import_path(archive)

    assert (from_file.records, from_file.written) == (1, 1)
    assert from_file.ecosystems == {"Debian"}
    assert (from_tree.records, from_tree.written) == (2, 2)
    assert from_tree.ecosystems == {"Debian", "PyPI"}
    assert (from_zip.records, from_zip.written) == (1, 1)
    assert from_zip.ecosystems == {"npm"}
    assert from_file.changed == {("Debian", "openssl")}
    assert from_tree.changed == {("Debian", "openssl"), ("PyPI", "tool")}
    assert found(await db.findings(IMAGE)) == [
        ("DSA-5678-1", "libssl3", "3.0.13-1~deb12u1"),
        ("PYSEC-2024-1", "Tool", "1.1"),
    ]


async def test_a_record_that_cannot_be_read_is_reported_and_the_rest_imported(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive = tmp_path / "all.zip"
    broken = {"id": "BROKEN-1", "modified": "last tuesday"}
    archive.write_bytes(zipped(PYSEC, broken))

    report = await db.import_path(archive)

    assert (report.records, report.written) == (1, 1)
    assert report.invalid == (
        f"{archive}:BROKEN-1.json: BROKEN-1: modified 'last tuesday' is not an RFC 3339 time",
    )


async def test_importing_again_changes_nothing_and_leaves_the_revision(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive = tmp_path / "all.zip"
    archive.write_bytes(zipped(DSA, DLA, PYSEC))
    first = await db.import_path(archive)
    after_first = await revision(metadata)

    again = await db.import_path(archive)

    assert (first.written, after_first) == (3, 1)
    assert (again.records, again.written, again.unchanged, again.changed) == (3, 0, 3, frozenset())
    assert await revision(metadata) == after_first


async def test_a_newer_modified_replaces_the_record_and_an_older_one_does_not(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(PYSEC))
    await db.import_path(path)
    before = await revision(metadata)

    newer = osv("PYSEC-2024-1", "PyPI", "tool", "1.2", modified="2024-06-01T00:00:00.5Z")
    path.write_text(json.dumps(newer))
    replaced = await db.import_path(path)
    after_newer = await revision(metadata)
    older = osv("PYSEC-2024-1", "PyPI", "tool", "9.9", modified="2023-01-01T00:00:00Z")
    path.write_text(json.dumps(older))
    ignored = await db.import_path(path)

    assert (replaced.written, replaced.changed) == (1, frozenset({("PyPI", "tool")}))
    assert after_newer == before + 1
    assert (ignored.written, ignored.unchanged) == (0, 1)
    assert await revision(metadata) == after_newer
    assert found(await db.findings(IMAGE)) == [("PYSEC-2024-1", "Tool", "1.2")]


async def test_a_record_that_moves_to_another_package_reports_both_as_changed(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(PYSEC))
    await db.import_path(path)

    moved = osv("PYSEC-2024-1", "PyPI", "other-tool", "1.1", modified="2024-07-01T00:00:00Z")
    path.write_text(json.dumps(moved))
    report = await db.import_path(path)

    assert report.changed == {("PyPI", "tool"), ("PyPI", "other-tool")}
    assert await db.findings(IMAGE) == []


async def test_a_newer_withdrawn_record_takes_its_findings_away(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(PYSEC))
    await db.import_path(path)
    assert found(await db.findings(IMAGE)) == [("PYSEC-2024-1", "Tool", "1.1")]

    withdrawn = osv(
        "PYSEC-2024-1",
        "PyPI",
        "tool",
        "1.1",
        modified="2024-08-01T00:00:00Z",
        withdrawn="2024-08-01T00:00:00Z",
    )
    path.write_text(json.dumps(withdrawn))
    report = await db.import_path(path)

    assert report.changed == {("PyPI", "tool")}
    assert await db.findings(IMAGE) == []
    status = await db.status()
    assert [(e.ecosystem, e.records, e.withdrawn) for e in status.ecosystems] == [("PyPI", 1, 1)]


async def test_matching_reads_only_the_advisories_of_the_images_packages(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    others = [osv(f"PYSEC-OTHER-{i}", "PyPI", f"other-{i}", "1.0") for i in range(50)]
    archive = tmp_path / "all.zip"
    archive.write_bytes(zipped(DSA, DLA, PYSEC, GHSA, *others))
    await db.import_path(archive)

    read = await VulnDbStore(metadata.engine).candidates({"Debian": {"openssl"}, "PyPI": {"tool"}})

    # DLA-1111-1 names openssl too (Debian 11): the release is checked after reading.
    assert sorted(read) == ["DLA-1111-1", "DSA-5678-1", "PYSEC-2024-1"]


async def test_sync_downloads_only_the_archives_that_changed(
    metadata: MetadataStore, archive_server: ArchiveServer
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive_server.archives["Debian"] = zipped(DSA, DLA)
    archive_server.archives["PyPI"] = zipped(PYSEC)

    first = await db.sync(archive_server.url, ["Debian", "PyPI"])
    after_first = await revision(metadata)
    second = await db.sync(archive_server.url, ["Debian", "PyPI"])
    after_second = await revision(metadata)
    newer = osv("PYSEC-2024-1", "PyPI", "tool", "1.3", modified="2024-09-01T00:00:00Z")
    archive_server.archives["PyPI"] = zipped(newer, osv("PYSEC-2024-2", "PyPI", "x", "1"))
    third = await db.sync(archive_server.url, ["Debian", "PyPI"])

    assert [a.outcome for a in first.archives] == ["updated", "updated"]
    assert first.written == 3
    assert [a.outcome for a in second.archives] == ["unchanged", "unchanged"]
    assert second.changed == frozenset() and after_second == after_first
    assert [a.outcome for a in third.archives] == ["unchanged", "updated"]
    pypi = third.archives[1].report
    assert pypi is not None and (pypi.written, pypi.unchanged) == (2, 0)
    assert third.changed == {("PyPI", "tool"), ("PyPI", "x")}
    assert archive_server.requests == [
        ("Debian", 200),
        ("PyPI", 200),
        ("Debian", 304),
        ("PyPI", 304),
        ("Debian", 304),
        ("PyPI", 200),
    ]
    assert found(await db.findings(IMAGE)) == [
        ("DSA-5678-1", "libssl3", "3.0.13-1~deb12u1"),
        ("PYSEC-2024-1", "Tool", "1.3"),
    ]


async def test_sync_sends_last_modified_back_to_a_server_without_etags(
    metadata: MetadataStore, archive_server: ArchiveServer
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive_server.etags = False
    archive_server.archives["PyPI"] = zipped(PYSEC)
    archive_server.modified["PyPI"] = "Wed, 01 May 2024 10:00:00 GMT"

    await db.sync(archive_server.url, ["PyPI"])
    unchanged = await db.sync(archive_server.url, ["PyPI"])
    archive_server.archives["PyPI"] = zipped(PYSEC, GHSA)
    archive_server.modified["PyPI"] = "Thu, 02 May 2024 10:00:00 GMT"
    changed = await db.sync(archive_server.url, ["PyPI"])

    assert [a.outcome for a in (*unchanged.archives, *changed.archives)] == [
        "unchanged",
        "updated",
    ]
    assert archive_server.requests == [("PyPI", 200), ("PyPI", 304), ("PyPI", 200)]
    assert (await db.status()).archives[0].last_modified == "Thu, 02 May 2024 10:00:00 GMT"


async def test_within_a_changed_archive_only_records_whose_modified_moved_are_rewritten(
    metadata: MetadataStore, archive_server: ArchiveServer
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive_server.archives["Debian"] = zipped(DSA, DLA)
    await db.sync(archive_server.url, ["Debian"])
    newer_dla = osv(
        "DLA-1111-1", "Debian:11", "openssl", "3.0.14-1", modified="2024-10-01T00:00:00Z"
    )
    archive_server.archives["Debian"] = zipped(DSA, newer_dla)

    report = await db.sync(archive_server.url, ["Debian"])

    (debian,) = report.archives
    assert debian.report is not None
    assert (debian.report.written, debian.report.unchanged) == (1, 1)
    assert report.changed == {("Debian", "openssl")}


async def test_an_archive_that_cannot_be_fetched_fails_alone(
    metadata: MetadataStore, archive_server: ArchiveServer
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    archive_server.archives["PyPI"] = zipped(PYSEC)

    report = await db.sync(archive_server.url, ["Nonexistent", "PyPI"])

    assert [a.outcome for a in report.archives] == ["failed", "updated"]
    assert report.failed[0].message == (
        f"GET {archive_server.url}/Nonexistent/all.zip answered 404 Not Found"
    )


async def test_status_says_what_is_loaded_how_new_and_where_from(
    metadata: MetadataStore, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    db = VulnerabilityDatabase(metadata.engine)
    assert (await db.status()).to_json() == {"ecosystems": [], "archives": []}
    archive_server.archives["Debian"] = zipped(
        DSA, osv("DLA-2", "Debian:11", "zlib", "1", modified="2024-07-02T03:04:05Z")
    )
    await db.sync(archive_server.url, ["Debian"])
    path = tmp_path / "pysec.json"
    path.write_text(json.dumps(PYSEC))
    await db.import_path(path)

    document = (await db.status()).to_json()

    ecosystems = {e["ecosystem"]: e for e in document["ecosystems"]}
    assert sorted(ecosystems) == ["Debian", "PyPI"]
    debian, pypi = ecosystems["Debian"], ecosystems["PyPI"]
    assert (debian["records"], debian["withdrawn"]) == (2, 0)
    assert debian["newest_modified"] == "2024-07-02T03:04:05Z"
    assert debian["source"] == f"{archive_server.url}/Debian/all.zip"
    assert (pypi["records"], pypi["source"]) == (1, str(path))
    assert pypi["newest_modified"] == "2024-05-01T10:00:00Z"
    assert debian["checked_at"] is not None and pypi["checked_at"] is not None
    (archive,) = document["archives"]
    assert archive["ecosystem"] == "Debian"
    assert archive["etag"] == archive_server.etag("Debian")
    assert archive["last_modified"] == "Wed, 01 May 2024 10:00:00 GMT"
    assert archive["records"] == 2
