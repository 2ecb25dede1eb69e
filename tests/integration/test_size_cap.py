"""The size cap: a cache filled past `max_size` evicts its least-recently-pulled images first,
ends under the low-water mark, and keeps the recently pulled ones, which still pull without a
single upstream request. The cap is enforced in-process on the running server's data, as the
server's own lifecycle job does."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time

import httpx
import pytest

from pullthrough.cache.pulls import FLUSH_SECONDS
from pullthrough.lifecycle.sizecap import enforce_size_cap
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.oci import mediatypes
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout
from pullthrough.storage.locks import FileLocks
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ACCEPT = ", ".join(sorted(mediatypes.INDEX_TYPES | mediatypes.IMAGE_TYPES))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pull(cache: Cache, image: PushedImage, *, blobs: bool = True) -> None:
    """Pull the tag, each platform manifest and (unless not wanted) every blob; verify all."""
    base = f"/v2/up/{image.repo}"
    with httpx.Client(base_url=cache.server.url, timeout=60) as client:
        answer = client.get(f"{base}/manifests/{image.tag}", headers={"Accept": ACCEPT})
        assert answer.status_code == 200, answer.text
        assert sha256(answer.content) == image.digest
        for child in image.children:
            answer = client.get(f"{base}/manifests/{child.digest}", headers={"Accept": ACCEPT})
            assert answer.status_code == 200, answer.text
            assert sha256(answer.content) == child.digest
        if blobs:
            for digest in sorted(image.blob_digests()):
                answer = client.get(f"{base}/blobs/{digest}")
                assert answer.status_code == 200, answer.text
                assert sha256(answer.content) == digest


def pulls_recorded(layout: DataLayout, digest: str) -> int:
    """How many pulls of `digest` the workers have flushed to the database so far."""
    query = "SELECT COALESCE(SUM(pull_count), 0) FROM manifest_pulls WHERE digest = ?"
    with contextlib.closing(sqlite3.connect(layout.metadata_file)) as db:
        return int(db.execute(query, (digest,)).fetchone()[0])


def stored_size(image: PushedImage) -> int:
    return sum(blob.size for blob in image.all_blobs().values())


async def test_over_the_cap_least_recently_pulled_images_go_first_until_under_low_water(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"workers": 2, "lifecycle": {"interval": 0}},
    )
    busybox, oci_app, multi = fixture_images.busybox, fixture_images.oci_app, fixture_images.multi
    multi_docker, many = fixture_images.multi_docker, fixture_images.many_layers
    images = [busybox, oci_app, multi, multi_docker, many]
    all_blobs = [image.blob_digests() for image in images]
    assert sum(len(b) for b in all_blobs) == len(set().union(*all_blobs)), "no shared blobs"

    # Fill the cache, oldest pull first; then pull two images again (the manifests only, as a
    # node whose layers are cached does), so they are the most recently pulled.
    for image in images:
        pull(cache, image)
    pull(cache, oci_app, blobs=False)
    pull(cache, multi_docker, blobs=False)
    # Least recently pulled first: busybox, multi, many, oci_app, multi_docker.
    layout = DataLayout(cache.server.data_dir)
    wait_for(
        lambda: (
            pulls_recorded(layout, oci_app.digest) >= 2
            and pulls_recorded(layout, multi_docker.digest) >= 2
        ),
        timeout=3 * FLUSH_SECONDS,
        what="the workers to flush the pull times",
    )

    total = sum(stored_size(image) for image in images)
    evicted_bytes = stored_size(busybox) + stored_size(multi)
    max_size = total - 1  # just over the cap
    low_water = (total - evicted_bytes) / max_size  # room for all but the two oldest
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        space = SpaceStore(metadata.engine)
        assert await space.stored_bytes() == total
        report = await enforce_size_cap(
            space,
            FilesystemDriver(layout.blob_root),
            max_size=max_size,
            low_water=low_water,
            grace=0,
            now=time.time(),
            locks=FileLocks(layout.temp_dir),
        )
        remaining = {
            image.digest
            for _, name in await space.repositories()
            for image in await space.images(name)
        }
    finally:
        await metadata.close()

    assert [image.digest for image in report.evicted] == [busybox.digest, multi.digest]
    assert report.bytes_before == total
    assert report.bytes_after == total - evicted_bytes <= low_water * max_size
    assert report.gc is not None and report.gc.bytes_freed == evicted_bytes
    assert remaining == {oci_app.digest, multi_docker.digest, many.digest}
    for digest in busybox.blob_digests() | multi.blob_digests():
        assert not cache.stored_blob(digest).exists(), digest
    for digest in oci_app.blob_digests() | multi_docker.blob_digests() | many.blob_digests():
        assert cache.stored_blob(digest).exists(), digest

    # What stayed pulls with no upstream request at all; what went is fetched again, whole.
    before = len(cache.proxy.requests)
    for image in (oci_app, multi_docker, many):
        pull(cache, image)
    assert len(cache.proxy.requests) == before
    blob_gets = cache.upstream_blob_gets()
    pull(cache, busybox)
    assert cache.upstream_blob_gets() == blob_gets + len(busybox.blob_digests())
