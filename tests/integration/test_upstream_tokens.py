"""A cold pull through a token-auth upstream costs one upstream GET per blob and no wasted 401:
once the manifest GET has shown that the upstream wants tokens, every blob GET of the pull goes
out with one, in whichever worker process the client's request lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import BLOB_PATH, MANIFEST_PATH, start_cache
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration


def test_cold_pull_through_a_token_upstream_sends_each_blob_get_once_with_the_token(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    # Two workers: skopeo's requests land on both, and the second one's first request to the
    # upstream is a blob GET.
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["token"], {"workers": 2})
    image = fixture_images.many_layers

    result = skopeo_copy(cache.ref(image.reference), tmp_path / "copy")

    assert result.returncode == 0, result.stderr
    assert verified_dir_digests(tmp_path / "copy") == image.all_digests()
    blob_gets = [
        entry for entry in cache.proxy.entries if entry.method == "GET" and BLOB_PATH in entry.path
    ]
    assert sorted(entry.path.rsplit("/", 1)[-1] for entry in blob_gets) == sorted(
        image.blob_digests()
    )
    assert [entry.status for entry in blob_gets] == [200] * len(image.blob_digests())
    # The one 401 of the pull is the manifest's, which is how the upstream says it wants tokens.
    refused = [(entry.method, entry.path) for entry in cache.proxy.entries if entry.status == 401]
    assert refused == [("GET", f"/v2/{image.repo}{MANIFEST_PATH}{image.tag}")]
