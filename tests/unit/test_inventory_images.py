"""The inventory of the rig's scanning images: real layers (gzip, zstd, plain tar) with real
package databases, read as streams through `LayerInventories` into a real SQLite store; the
layer source is the seam (the blobs as the rig built them, in 64 KiB pieces)."""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from pullthrough.metadata.layer_inventories import LayerInventoryStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.scanning.inventory import Layer, LayerInventories
from pullthrough.scanning.inventory.records import FORMAT
from pullthrough.scanning.model import Inventory
from tests.rig.oci_build import ImageContent
from tests.rig.pusher import Blob
from tests.rig.scan_images import (
    ExpectedPackage,
    ScanImage,
    ScanImages,
    build_scan_images,
    layer_blob,
    package_json,
)


class BlobSource:
    """A LayerSource over the rig's blobs, counting reads per digest."""

    def __init__(self, blobs: dict[str, Blob]) -> None:
        self._blobs = blobs
        self.reads: collections.Counter[str] = collections.Counter()

    async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
        self.reads[digest] += 1
        data = self._blobs[digest].read()
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> ScanImages:
    return build_scan_images(tmp_path_factory.mktemp("scan-images"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LayerInventoryStore]:
    metadata = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    yield LayerInventoryStore(metadata.engine)
    await metadata.close()


def _source(*images: ScanImage) -> BlobSource:
    return BlobSource({blob.digest: blob for image in images for blob in image.layers})


def _layers(image: ScanImage) -> list[Layer]:
    return [Layer(blob.digest, blob.media_type) for blob in image.layers]


async def _inventory(store: LayerInventoryStore, image: ScanImage) -> Inventory:
    return await LayerInventories(_source(image), store).image("scan/x", _layers(image))


def _found(inventory: Inventory) -> set[ExpectedPackage]:
    return {
        ExpectedPackage(p.ecosystem, p.name, p.version, p.purl, p.source_name, p.source_version)
        for p in inventory.packages
    }


FIXTURES = ["debian", "distroless", "alpine", "rocky", "fedora", "amd64", "arm64"]


@pytest.mark.parametrize("name", FIXTURES)
async def test_each_image_yields_exactly_its_packages_and_distro(
    images: ScanImages, store: LayerInventoryStore, name: str
) -> None:
    image: ScanImage = getattr(images, name)
    inventory = await _inventory(store, image)
    assert inventory.distro is not None
    assert (inventory.distro.id, inventory.distro.version_id) == image.distro
    assert _found(inventory) == set(image.packages)
    assert len(inventory.packages) == len(image.packages)  # nothing listed twice
    assert inventory.skipped == ()


async def test_debian_source_packages_in_both_forms(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    inventory = await _inventory(store, images.debian)
    by_name = {p.name: p for p in inventory.packages if p.ecosystem == "Debian"}
    assert (by_name["bash"].version, by_name["bash"].source_version) == ("5.2.15-2+b8", "5.2.15-2")
    assert (by_name["libc6"].source_name, by_name["libc6"].source_version) == (
        "glibc",
        by_name["libc6"].version,
    )
    assert by_name["zlib1g"].purl == (
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    )
    assert "libssl1.1" not in by_name  # only config files of it are left
    assert by_name["libc6"].path == "var/lib/dpkg/status"


async def test_whiteout_and_opaque_directory_hide_lower_layers_files(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    image = images.debian
    bottom_only = replace(image, content=ImageContent(image.content.config, image.layers[:1]))
    below = {p.name for p in (await _inventory(store, bottom_only)).packages}
    assert image.hidden <= below  # the bottom layer does list them

    inventory = await _inventory(store, image)
    names = {p.name for p in inventory.packages}
    assert not names & image.hidden
    assert "is-even" in names  # added in the opaque directory by the layer that made it opaque
    libssl3 = next(p for p in inventory.packages if p.name == "libssl3")
    assert libssl3.version == "3.0.19-1~deb12u3"  # the upper layer's status file replaced it
    assert libssl3.layer == image.layers[1].digest


async def test_rpm_berkeley_db_and_ndb_are_reported_skipped(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    inventory = await _inventory(store, images.rpm_legacy)
    assert inventory.packages == ()
    assert [s.split(" ", 1)[0] for s in inventory.skipped] == sorted(images.rpm_legacy.skipped)
    assert "Berkeley DB" in inventory.skipped[1] and "NDB" in inventory.skipped[0]


async def test_a_layer_shared_by_two_images_is_read_once(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    source = _source(images.shared_a, images.shared_b)
    inventories = LayerInventories(source, store)
    first = await inventories.image("scan/a", _layers(images.shared_a))
    second = await inventories.image("scan/b", _layers(images.shared_b))
    assert _found(first) == set(images.shared_a.packages)
    assert _found(second) == set(images.shared_b.packages)
    shared = images.shared_a.layers[0].digest
    assert shared == images.shared_b.layers[0].digest
    assert source.reads[shared] == 1
    assert inventories.layers_read == 3  # the shared base and each image's own top

    # Another scanner (another worker, a later scan) finds every layer in the store.
    again = LayerInventories(_source(images.shared_a), store)
    assert _found(await again.image("scan/a", _layers(images.shared_a))) == _found(first)
    assert again.layers_read == 0


async def test_a_file_over_its_cap_and_a_layer_that_is_no_tar_are_skipped_not_dropped(
    store: LayerInventoryStore,
) -> None:
    huge = package_json("huge", "1.0.0") + b" " * (1024 * 1024)
    layer, _ = layer_blob(
        [
            ("app/node_modules/huge/package.json", huge),
            ("app/node_modules/small/package.json", package_json("small", "2.0.0")),
        ]
    )
    junk = Blob.of(b"this is not a tar archive" * 100, layer.media_type)
    source = BlobSource({layer.digest: layer, junk.digest: junk})
    inventory = await LayerInventories(source, store).image(
        "scan/x", [Layer(layer.digest, layer.media_type), Layer(junk.digest, junk.media_type)]
    )
    assert [p.name for p in inventory.packages] == ["small"]
    assert inventory.skipped[0].startswith(f"layer {junk.digest}: not a readable tar archive")
    assert inventory.skipped[1].startswith("app/node_modules/huge/package.json")
    assert "over the 1024 KiB read limit" in inventory.skipped[1]


async def test_a_failing_source_raises_and_stores_nothing(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    class Broken(BlobSource):
        async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
            yield self._blobs[digest].read()[:100]
            raise ConnectionResetError("upstream went away")

    image = images.debian
    with pytest.raises(ConnectionResetError):
        await LayerInventories(Broken(_blobs(image)), store).image("scan/x", _layers(image))
    inventories = LayerInventories(_source(image), store)
    assert _found(await inventories.image("scan/x", _layers(image))) == set(image.packages)
    assert inventories.layers_read == 3


def _blobs(image: ScanImage) -> dict[str, Blob]:
    return {blob.digest: blob for blob in image.layers}


async def test_concurrent_scans_of_images_sharing_a_layer_read_it_once(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    class Slow(BlobSource):
        async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
            async for chunk in super().layer(repository, digest):
                await asyncio.sleep(0)  # let the other scan start meanwhile
                yield chunk

    source = Slow(_blobs(images.shared_a) | _blobs(images.shared_b))
    inventories = LayerInventories(source, store)
    first, second = await asyncio.gather(
        inventories.image("scan/a", _layers(images.shared_a)),
        inventories.image("scan/b", _layers(images.shared_b)),
    )
    assert _found(first) == set(images.shared_a.packages)
    assert _found(second) == set(images.shared_b.packages)
    assert source.reads[images.shared_a.layers[0].digest] == 1
    assert inventories.layers_read == 3


async def test_a_cancelled_scan_stops_reading_its_layer(
    images: ScanImages, store: LayerInventoryStore
) -> None:
    started, closed = asyncio.Event(), asyncio.Event()

    class Stalled(BlobSource):
        async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
            try:
                yield self._blobs[digest].read()[:1000]
                started.set()
                await asyncio.Event().wait()  # an upstream that stops sending
                yield b""
            finally:
                closed.set()

    image = images.debian
    inventories = LayerInventories(Stalled(_blobs(image)), store)
    scan = asyncio.ensure_future(inventories.image("scan/x", _layers(image)))
    await started.wait()
    scan.cancel()
    with pytest.raises(asyncio.CancelledError):
        await scan
    await asyncio.wait_for(closed.wait(), 30)  # the source was closed
    deadline = asyncio.get_running_loop().time() + 30
    while _walking() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert not _walking()  # the reading thread ended
    assert await store.get(image.layers[0].digest, FORMAT) is None


def _walking() -> bool:
    """Whether a thread is still inside the tar walk."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "_walk_tar":
                return True
            frame = frame.f_back  # type: ignore[assignment]
    return False
