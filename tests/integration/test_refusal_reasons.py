"""A refusal's reason reaches the client's screen: a principal that may pull but not import,
asking for an image whose manifest is cached but whose layers are not, is refused at the
manifest (whose message skopeo prints) rather than at a blob (a bare "invalid status code 403").
A HEAD of an uncached blob is checked like a GET."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cache_setup import BLOB_PATH, Cache
from tests.integration.test_access import PASSWORDS, cache, pull_manifest, token  # noqa: F401
from tests.rig.images import FixtureImages
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration


def test_pull_only_principal_is_refused_at_the_manifest_when_layers_are_uncached(
    cache: Cache,  # noqa: F811
    fixture_images: FixtureImages,
    tmp_path: Path,
) -> None:
    image = fixture_images.oci_app
    # alice (may import) caches the manifest only: no blob is fetched.
    warm = pull_manifest(cache, "alice", image.repo, "v1")
    assert warm.status_code == 200, warm.text
    assert cache.upstream_blob_gets() == 0
    cache.proxy.reset()

    bob = ("bob", PASSWORDS["bob"])
    refused = skopeo_copy(cache.ref(image.reference), tmp_path / "bob", src_creds=bob)
    assert refused.returncode != 0
    assert "registry:ImportUpstream" in refused.stderr, refused.stderr
    assert "'bob'" in refused.stderr
    assert "not cached" in refused.stderr
    assert cache.proxy.count(path_contains=BLOB_PATH) == 0

    response = pull_manifest(cache, "bob", image.repo, "v1")
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert error["code"] == "DENIED"
    assert f"up/{image.repo}@{image.digest}" in error["message"]
    assert f"{len(image.blobs)} of its {len(image.blobs)}" in error["message"]

    # A HEAD of an uncached blob is refused as a GET is, without asking upstream.
    bearer = token(cache, "bob", f"repository:up/{image.repo}:pull")
    layer = image.blobs[-1].digest
    head = cache.head(
        f"/v2/up/{image.repo}/blobs/{layer}", headers={"Authorization": f"Bearer {bearer}"}
    )
    assert head.status_code == 403
    get = cache.get(
        f"/v2/up/{image.repo}/blobs/{layer}", headers={"Authorization": f"Bearer {bearer}"}
    )
    assert get.status_code == 403
    assert get.json()["errors"][0]["code"] == "DENIED"
    assert cache.proxy.count(path_contains=BLOB_PATH) == 0

    # Once alice has pulled the whole image, bob reads it from the cache.
    pulled = skopeo_copy(
        cache.ref(image.reference), tmp_path / "alice", src_creds=("alice", PASSWORDS["alice"])
    )
    assert pulled.returncode == 0, pulled.stderr
    for blob in image.blobs:
        cache.committed(blob.digest)
    cache.proxy.reset()
    cached = skopeo_copy(cache.ref(image.reference), tmp_path / "bob2", src_creds=bob)
    assert cached.returncode == 0, cached.stderr
    assert verified_dir_digests(tmp_path / "bob2") == image.all_digests()
    assert cache.proxy.count(path_contains=BLOB_PATH) == 0
