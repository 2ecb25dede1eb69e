"""The inventory against the tools that own the formats, on this machine's own databases: every
installed package of its dpkg status file with the source name and version `dpkg-query` gives,
and every distribution of the test environment's site-packages as importlib.metadata reads it.
The files go through a real layer (gzip tar) and `read_layer`."""

from __future__ import annotations

import asyncio
import subprocess
import sysconfig
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

from pullthrough.scanning.inventory.layers import read_layer
from pullthrough.scanning.inventory.merge import merge
from pullthrough.scanning.model import Inventory
from tests.rig.scan_images import DEBIAN_OS_RELEASE, layer_blob

_DPKG_FIELDS = "${db:Status-Abbrev}|${Package}|${Version}|${source:Package}|${source:Version}\n"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 256 * 1024):
        yield data[start : start + 256 * 1024]


def _inventory(files: list[tuple[str, bytes]]) -> Inventory:
    layer, _ = layer_blob(files)
    return merge([(layer.digest, asyncio.run(read_layer(_chunks(layer.read()))))])


def test_this_machines_dpkg_status_as_dpkg_query_reads_it() -> None:
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", _DPKG_FIELDS],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    expected = set()
    for line in listed.splitlines():
        status, name, version, source, source_version = line.split("|")
        if status.strip() in ("ii", "hi"):  # installed (held or not)
            expected.add((name, version, source, source_version))
    assert len(expected) > 50
    status_file = Path("/var/lib/dpkg/status").read_bytes()
    inventory = _inventory(
        [("etc/os-release", DEBIAN_OS_RELEASE), ("var/lib/dpkg/status", status_file)]
    )
    found = {(p.name, p.version, p.source_name, p.source_version) for p in inventory.packages}
    # dpkg-query names multi-arch packages once per architecture as `name`; so do we.
    assert found == expected


def test_the_test_environments_python_distributions_as_importlib_reads_them() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    files = []
    expected = set()
    for info in sorted(site.glob("*.dist-info")):
        distribution = metadata.PathDistribution(info)
        metadata_file = info / "METADATA"
        files.append((str(metadata_file.relative_to("/")), metadata_file.read_bytes()))
        expected.add((distribution.metadata["Name"], distribution.version))
    assert len(expected) > 20
    inventory = _inventory(files)
    assert {(p.name, p.version) for p in inventory.packages} == expected
    assert all(p.purl.startswith("pkg:pypi/") for p in inventory.packages)
