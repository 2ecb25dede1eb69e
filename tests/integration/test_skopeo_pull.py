"""skopeo pulls real images through a running cache, under every upstream auth mode, and gets
exactly the upstream's bytes; a second pull costs upstream nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy, skopeo_inspect_raw, verified_dir_digests

pytestmark = pytest.mark.integration


def copy_and_verify(cache: Cache, image: PushedImage, dest: Path, *, all_platforms: bool) -> None:
    result = skopeo_copy(cache.ref(image.reference), dest, all_platforms=all_platforms)
    assert result.returncode == 0, result.stderr
    got = verified_dir_digests(dest)
    if all_platforms or not image.children:
        assert got == image.all_digests()
        assert (dest / "manifest.json").read_bytes() == image.manifest
    else:
        assert got == image.child("amd64").all_digests()


@pytest.mark.parametrize("mode", ["anonymous", "basic", "token"])
def test_skopeo_copies_byte_identical_images_and_the_second_copy_is_free(
    mode: AuthMode,
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams[mode])
    images = [
        (fixture_images.busybox, False),
        (fixture_images.oci_app, False),
        (fixture_images.multi, True),
        (fixture_images.multi_docker, True),
        (fixture_images.many_layers, False),
    ]
    for i, (image, all_platforms) in enumerate(images):
        copy_and_verify(cache, image, tmp_path / f"first-{i}", all_platforms=all_platforms)
    blob_count = len(set().union(*(image.blob_digests() for image, _ in images)))
    assert cache.upstream_blob_gets() == blob_count  # each blob fetched once

    cache.proxy.reset()
    for i, (image, all_platforms) in enumerate(images):
        copy_and_verify(cache, image, tmp_path / f"second-{i}", all_platforms=all_platforms)
    assert cache.upstream_blob_gets() == 0
    assert cache.upstream_manifest_gets() == 0
    assert cache.proxy.count("HEAD") == 0
    assert cache.proxy.requests == []


def test_single_platform_pull_of_an_index_fetches_only_that_platform(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    copy_and_verify(cache, fixture_images.multi, tmp_path / "amd64", all_platforms=False)
    arm = fixture_images.multi.child("arm64")
    for digest in arm.blob_digests():
        assert cache.proxy.count(path_contains=digest) == 0
        assert not cache.stored_blob(digest).exists()


def test_large_image_copies_through_the_cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    copy_and_verify(cache, fixture_images.large, tmp_path / "large", all_platforms=False)
    (layer,) = [b for b in fixture_images.large.blobs if b.size >= 256 * 1024 * 1024]
    assert cache.committed(layer.digest).stat().st_size == layer.size
    assert cache.spool_files() == []


def test_prefix_ns_and_default_reach_one_cached_repository(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    # Manifests alone: no eager fill of their blobs.
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], eager_fill=False
    )
    busybox = fixture_images.busybox
    first = skopeo_inspect_raw(cache.ref("library/busybox:latest"))
    assert first == busybox.manifest
    cache.proxy.reset()

    server = cache.server.host
    accept = {"Accept": busybox.media_type}
    ways_in = [
        f"/v2/{'up'}/busybox/manifests/latest",  # Docker Hub style: library/ added
        "/v2/busybox/manifests/latest",  # registry-mirrors: the default rule
        "/v2/library/busybox/manifests/latest",
        f"/v2/library/busybox/manifests/latest?ns={cache.proxy.host}",  # containerd hosts.toml
        f"/v2/library/busybox/manifests/latest?ns={cache.proxy.host.replace(':', '%3A')}",
        f"/v2/up/library/busybox/manifests/latest?ns={cache.proxy.host}",
    ]
    for path in ways_in:
        response = httpx.get(f"http://{server}{path}", headers=accept)
        assert response.status_code == 200, (path, response.text)
        assert response.content == busybox.manifest
        assert response.headers["Docker-Content-Digest"] == busybox.digest
        assert response.headers["X-Pullthrough-Cache"] == "hit", path
    assert skopeo_inspect_raw(f"{server}/busybox:latest") == busybox.manifest
    assert skopeo_inspect_raw(f"{server}/up/busybox:latest") == busybox.manifest
    assert cache.proxy.requests == []

    catalog = httpx.get(f"http://{server}/v2/_catalog").json()
    assert catalog == {"repositories": ["up/library/busybox"]}

    unknown = httpx.get(f"http://{server}/v2/library/busybox/manifests/latest?ns=quay.io")
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert "quay.io" in unknown.json()["errors"][0]["message"]
