"""Reading a 1 GiB image keeps the inventory's memory bounded: a subprocess reads a generated
layer of 1 GiB of filler (half random, half zeros), 20,000 small files and then the package
databases, through `LayerInventories.image` into a real SQLite store, and reports its own peak
RSS (`VmHWM` of /proc/self/status: unlike `ru_maxrss`, it starts afresh at exec rather than from
the forking process's peak). The layer is generated as a stream, so the test costs no disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GIB = 1024 * 1024 * 1024
LIMIT_MIB = 200

_PROBE = r"""
import asyncio, json, sys
from pathlib import Path

from pullthrough.metadata.layer_inventories import LayerInventoryStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.scanning.inventory import Layer, LayerInventories
from tests.rig.oci_build import OCI_LAYER
from tests.rig.rpmdb import write_rpmdb
from tests.rig.scan_images import ROCKY_PACKAGES, dpkg_status, large_layer_chunks

def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


workdir = Path(sys.argv[1])
filler = int(sys.argv[2])
rpmdb = write_rpmdb(workdir / "rpmdb.sqlite", ROCKY_PACKAGES)
tail = [("var/lib/dpkg/status", dpkg_status()), ("var/lib/rpm/rpmdb.sqlite", rpmdb)]


class GeneratedLayer:
    def __init__(self) -> None:
        self.compressed = 0

    async def layer(self, repository, digest):
        for chunk in large_layer_chunks(filler, 20_000, tail):
            self.compressed += len(chunk)
            yield chunk


async def main() -> None:
    metadata = await MetadataStore.open(sqlite_url(workdir / "metadata.sqlite"))
    before = peak_rss_kib()
    source = GeneratedLayer()
    inventories = LayerInventories(source, LayerInventoryStore(metadata.engine))
    layer = Layer("sha256:" + "1" * 64, OCI_LAYER)
    inventory = await inventories.image("scan/large", [layer])
    await metadata.close()
    print(json.dumps({
        "packages": sorted({p.name for p in inventory.packages}),
        "skipped": list(inventory.skipped),
        "compressed": source.compressed,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }))


asyncio.run(main())
"""


def test_reading_a_1_gib_image_stays_under_200_mib(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path), str(GIB)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=Path(__file__).parent.parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    print(
        f"peak RSS {report['peak_rss_kib'] / 1024:.1f} MiB "
        f"(after imports and opening the store: {report['rss_before_kib'] / 1024:.1f} MiB), "
        f"{report['compressed'] / 1024 / 1024:.0f} MiB compressed, 1 GiB of filler"
    )
    # The databases at the end of the layer were found: the whole layer was read.
    assert {"libc6", "libssl3", "openssl-libs", "glibc"} <= set(report["packages"])
    assert report["skipped"] == []
    assert report["peak_rss_kib"] < LIMIT_MIB * 1024
