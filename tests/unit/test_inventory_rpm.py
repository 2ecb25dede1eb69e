"""rpm's SQLite database, checked against rpm itself (Debian's `rpm` package, which `make test`
installs): rpm reads the databases the rig writes, and the inventory reads one rpm wrote for a
package rpmbuild built. A header that is not one is reported, not dropped."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pullthrough.scanning.inventory.layers import read_layer
from pullthrough.scanning.inventory.merge import merge
from pullthrough.scanning.inventory.rpm import read_rpmdb_sqlite
from tests.rig.rpmdb import write_rpmdb
from tests.rig.scan_images import ROCKY_PACKAGES, layer_blob, os_release

_SPEC = """\
Name: demo-lib
Epoch: 2
Version: 1.4.2
Release: 3.el9
Summary: a package for the inventory's test
License: MIT
BuildArch: noarch
%description
Nothing inside.
%files
"""


def _rpm(tool: str = "rpm") -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: `make test` installs Debian's rpm package", pytrace=False)
    return path


def test_rpm_reads_the_database_the_rig_writes(tmp_path: Path) -> None:
    write_rpmdb(tmp_path / "rpmdb.sqlite", ROCKY_PACKAGES)
    listed = subprocess.run(
        [_rpm(), "--dbpath", str(tmp_path), "-qa", "--qf", "%{NAME} %{EPOCHNUM} %{SOURCERPM}\\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert sorted(listed.splitlines()) == sorted(
        f"{p.name} {p.epoch or 0} {p.source_rpm}" for p in ROCKY_PACKAGES
    )


def test_the_inventory_reads_a_database_rpm_wrote(tmp_path: Path) -> None:
    top = tmp_path / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS" / "demo.spec").write_text(_SPEC)
    database = tmp_path / "db"
    defines = ["--define", f"_topdir {top}", "--define", f"_dbpath {database}"]
    subprocess.run(
        [_rpm("rpmbuild"), *defines, "-bb", str(top / "SPECS" / "demo.spec")],
        capture_output=True,
        check=True,
        timeout=120,
    )
    (package,) = (top / "RPMS" / "noarch").glob("*.rpm")
    subprocess.run([_rpm(), "--dbpath", str(database), "--initdb"], check=True, timeout=60)
    subprocess.run(
        [_rpm(), "--dbpath", str(database), "-i", "--justdb", "--nodeps", str(package)],
        capture_output=True,
        check=True,
        timeout=60,
    )

    (record,) = read_rpmdb_sqlite(database / "rpmdb.sqlite")
    assert (record.name, record.epoch, record.version, record.arch) == (
        "demo-lib",
        2,
        "1.4.2-3.el9",
        "noarch",
    )
    assert (record.source_name, record.source_version) == ("demo-lib", "1.4.2-3.el9")

    # The same database in an image, where newer distributions keep it.
    layer, _ = layer_blob(
        [
            ("etc/os-release", os_release("almalinux", "9.4", "AlmaLinux 9.4")),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", (database / "rpmdb.sqlite").read_bytes()),
        ]
    )
    inventory = merge([(layer.digest, asyncio.run(read_layer(_chunks(layer.read()))))])
    (found,) = inventory.packages
    assert (found.ecosystem, found.version, found.source_version) == (
        "AlmaLinux",
        "2:1.4.2-3.el9",
        "2:1.4.2-3.el9",
    )
    assert found.purl == (
        "pkg:rpm/almalinux/demo-lib@1.4.2-3.el9?arch=noarch&distro=almalinux-9.4&epoch=2"
    )


def test_a_broken_header_is_reported_skipped(tmp_path: Path) -> None:
    path = tmp_path / "rpmdb.sqlite"
    write_rpmdb(path, ROCKY_PACKAGES)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE Packages SET blob = substr(blob, 1, 40) WHERE hnum = 2")
    connection.close()
    layer, _ = layer_blob([("var/lib/rpm/rpmdb.sqlite", path.read_bytes())], "tar")
    inventory = merge([(layer.digest, asyncio.run(read_layer(_chunks(layer.read()))))])
    assert inventory.packages == ()
    (skipped,) = inventory.skipped
    assert skipped.startswith(f"var/lib/rpm/rpmdb.sqlite (layer {layer.digest}): could not be read")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_an_rpm_log_with_unmerged_changes_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rpmdb.sqlite"
    write_rpmdb(path, ROCKY_PACKAGES)
    layer, _ = layer_blob(
        [
            ("var/lib/rpm/rpmdb.sqlite", path.read_bytes()),
            ("var/lib/rpm/rpmdb.sqlite-wal", b"\x37\x7f\x06\x82" + bytes(60)),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite-wal", b""),  # merged: nothing to say
        ]
    )
    inventory = merge([(layer.digest, asyncio.run(read_layer(_chunks(layer.read()))))])
    assert len(inventory.packages) == len(ROCKY_PACKAGES)
    assert inventory.skipped == (
        f"var/lib/rpm/rpmdb.sqlite-wal (layer {layer.digest}): 64 bytes of rpm changes not "
        "merged into rpmdb.sqlite: its list may be short",
    )
