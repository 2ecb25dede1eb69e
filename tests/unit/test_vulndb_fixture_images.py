"""The rig's scanning images, inventoried from their real package databases, matched against
OSV records written for them: every expected finding with its fixed version, and none for a
version outside the ranges, another release, or a binary package named in place of its source
package. (tests/integration/test_scanning.py shows the same through a server and skopeo.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pullthrough.metadata.layer_inventories import LayerInventoryStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.scanning.inventory import Layer, LayerInventories
from pullthrough.scanning.model import Finding
from pullthrough.scanning.vulndb import VulnerabilityDatabase
from tests.rig.pusher import Blob
from tests.rig.scan_images import ScanImage, ScanImages, build_scan_images

DATA = Path(__file__).parent.parent / "data"


class BlobSource:
    """A LayerSource over the rig's blobs, in 64 KiB pieces."""

    def __init__(self, blobs: dict[str, Blob]) -> None:
        self._blobs = blobs

    async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
        data = self._blobs[digest].read()
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> ScanImages:
    return build_scan_images(tmp_path_factory.mktemp("scan-images"))


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    yield store
    await store.close()


async def findings(
    metadata: MetadataStore, image: ScanImage
) -> set[tuple[str, str, str, str | None]]:
    source = BlobSource({blob.digest: blob for blob in image.layers})
    layers = [Layer(blob.digest, blob.media_type) for blob in image.layers]
    inventory = await LayerInventories(source, LayerInventoryStore(metadata.engine)).image(
        "scan/x", layers
    )
    found: list[Finding] = await VulnerabilityDatabase(metadata.engine).findings(inventory)
    return {(f.advisory, f.package.name, f.package.version, f.fixed_version) for f in found}


async def test_the_debian_and_alpine_images_have_exactly_the_expected_findings(
    metadata: MetadataStore, images: ScanImages
) -> None:
    report = await VulnerabilityDatabase(metadata.engine).import_path(
        DATA / "osv-fixtures" / "images"
    )
    assert report.invalid == ()

    upgraded, curl = "3.0.19-1~deb12u3", "7.88.1-10+deb12u14"
    # Not found: glibc's advisory is for Debian 11, bash's fix predates the image's version,
    # DLA-9006-1 names the binary package libcurl4, urllib3 1.x is outside the 2.x range, six
    # and left-pad were removed by upper layers.
    assert await findings(metadata, images.debian) == {
        ("DSA-9001-1", "libssl3", upgraded, "3.0.19-1~deb12u4"),
        ("DSA-9001-1", "openssl", upgraded, "3.0.19-1~deb12u4"),
        ("DSA-9005-1", "curl", curl, "7.88.1-10+deb12u15"),
        ("DSA-9005-1", "libcurl4", curl, "7.88.1-10+deb12u15"),
        ("GHSA-9001-aaaa-bbbb", "requests", "2.28.1", "2.31.0"),
        ("GHSA-9004-aaaa-bbbb", "lodash", "4.17.20", "4.17.21"),
    }
    # zlib's advisory is for Alpine 3.18: not this image's release.
    assert await findings(metadata, images.alpine) == {
        ("ALPINE-9007", "libcrypto3", "3.1.4-r2", "3.1.4-r3"),
        ("ALPINE-9007", "libssl3", "3.1.4-r2", "3.1.4-r3"),
        ("GHSA-9006-aaaa-bbbb", "semver", "7.5.1", "7.5.2"),
    }


async def test_the_rocky_images_rpms_are_matched_by_epoch_version_release(
    metadata: MetadataStore, images: ScanImages
) -> None:
    report = await VulnerabilityDatabase(metadata.engine).import_path(DATA / "osv" / "rocky")
    assert (report.records, report.invalid) == (5, ())

    # Not found: bash 5.1.8-6.el9_1 is after the fix 5.1.8-6.el9; tzdata's fix is its own
    # version; the other tzdata advisory is for Rocky Linux 8.
    assert await findings(metadata, images.rocky) == {
        ("RLSA-2024:9001", "openssl-libs", "1:3.0.7-24.el9", "1:3.0.7-25.el9"),
        ("RLSA-2024:9002", "glibc", "2.34-83.el9.7", "2.34-83.el9.12"),
    }
