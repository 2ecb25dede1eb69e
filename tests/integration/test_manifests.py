"""Manifests, tags, referrers and listings through the cache: what comes back and what it cost
upstream."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, sha256, start_cache
from tests.rig.images import FixtureImages, RegistryPusher, retag
from tests.rig.oci_build import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ALL_TYPES = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_repos = count()


@pytest.fixture
def upstream(upstreams: dict[AuthMode, UpstreamRegistry]) -> UpstreamRegistry:
    return upstreams["anonymous"]


@pytest.fixture
def cache(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    # Upstream requests are counted per manifest: no eager fill of the blobs.
    return start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        tag_ttl="1s",
        negative_ttl="30s",
        eager_fill=False,
    )


def manifest(cache: Cache, repo: str, reference: str, accept: str = ALL_TYPES) -> httpx.Response:
    return cache.get(f"/v2/up/{repo}/manifests/{reference}", headers={"Accept": accept})


def test_head_and_get_carry_digest_type_and_length(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    image = fixture_images.oci_app
    head = cache.head("/v2/up/team/oci-app/manifests/v1", headers={"Accept": ALL_TYPES})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert head.headers["Content-Type"] == OCI_MANIFEST
    assert head.headers["Content-Length"] == str(len(image.manifest))
    get = manifest(cache, "team/oci-app", "v1")
    assert get.content == image.manifest
    assert get.headers["Content-Type"] == OCI_MANIFEST
    assert cache.upstream_manifest_gets() == 1  # the HEAD filled the cache


def test_first_pull_by_digest_fills_the_cache(cache: Cache, fixture_images: FixtureImages) -> None:
    child = fixture_images.multi.child("arm64")
    first = manifest(cache, "team/multi", child.digest)
    assert first.status_code == 200
    assert first.content == child.manifest
    assert sha256(first.content) == child.digest
    cache.proxy.reset()
    second = manifest(cache, "team/multi", child.digest)
    assert second.content == child.manifest
    assert second.headers["X-Pullthrough-Cache"] == "hit"
    assert cache.proxy.requests == []


def test_a_client_that_accepts_less_gets_what_upstream_offers_it(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    image = fixture_images.multi_docker
    assert manifest(cache, "team/multi-docker", "latest").content == image.manifest
    narrow = manifest(cache, "team/multi-docker", "latest", accept=DOCKER_MANIFEST)
    assert narrow.status_code == 200
    assert narrow.headers["Content-Type"] == DOCKER_MANIFEST
    assert narrow.content == image.child("amd64").manifest
    # The tag still maps to the list for everyone else.
    assert manifest(cache, "team/multi-docker", "latest").content == image.manifest


def test_retagged_upstream_is_seen_after_the_ttl_via_head_then_get(
    cache: Cache, upstream: UpstreamRegistry
) -> None:
    repo = f"fresh/app{next(_repos)}"
    with RegistryPusher(upstream.url) as pusher:
        old = retag(pusher, repo, "stable")
        assert manifest(cache, repo, "stable").content == old.manifest
        cache.proxy.reset()
        assert manifest(cache, repo, "stable").headers["X-Pullthrough-Cache"] == "hit"
        assert cache.proxy.requests == []  # within the TTL

        time.sleep(1.2)
        unchanged = manifest(cache, repo, "stable")
        assert unchanged.headers["X-Pullthrough-Cache"] == "revalidated"
        assert cache.proxy.count("HEAD", path_contains="/manifests/stable") == 1
        assert cache.upstream_manifest_gets() == 0

        new = retag(pusher, repo, "stable")
        cache.proxy.reset()
        time.sleep(1.2)
        changed = manifest(cache, repo, "stable")
    assert changed.content == new.manifest
    assert changed.headers["Docker-Content-Digest"] == new.digest
    assert cache.proxy.count("HEAD", path_contains="/manifests/stable") == 1
    assert cache.proxy.count("GET", path_contains="/manifests/stable") == 1


def test_upstream_trouble_serves_cached_tags_stale_and_fails_uncached_clearly(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    image = fixture_images.busybox
    assert manifest(cache, "library/busybox", "latest").content == image.manifest
    time.sleep(1.2)
    cache.proxy.fail(r"/v2/", 503)
    stale = manifest(cache, "library/busybox", "latest")
    assert stale.status_code == 200
    assert stale.content == image.manifest
    assert stale.headers["X-Pullthrough-Cache"] == "stale"
    assert "stale" in stale.headers["Warning"]
    uncached = manifest(cache, "team/oci-app", "v1")
    assert uncached.status_code == 502
    error = uncached.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert cache.proxy.host in error["message"]
    assert "503" in error["message"]

    cache.proxy.clear_faults()
    cache.proxy.fail(r"/v2/", 429, headers={"Retry-After": "120"})
    limited = manifest(cache, "team/oci-app", "v1")
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_missing_tags_are_remembered_briefly(cache: Cache) -> None:
    for _ in range(5):
        missing = manifest(cache, "team/oci-app", "no-such-tag")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert cache.proxy.count("GET", path_contains="/manifests/no-such-tag") == 1


def test_concurrent_requests_for_a_cold_tag_make_one_upstream_request(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    cache.proxy.delay("/manifests/", 0.3, times=1)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: manifest(cache, "team/many-layers", "v1"), range(20)))
    assert {a.content for a in answers} == {fixture_images.many_layers.manifest}
    assert cache.upstream_manifest_gets() == 1


def test_tags_list_from_upstream_with_pagination_and_from_cache_when_it_fails(
    cache: Cache, upstream: UpstreamRegistry
) -> None:
    repo = f"tagged/app{next(_repos)}"
    with RegistryPusher(upstream.url) as pusher:
        for tag in ("a", "b", "c"):
            retag(pusher, repo, tag, layer_count=1)
    page = cache.get(f"/v2/up/{repo}/tags/list?n=2")
    assert page.json() == {"name": f"up/{repo}", "tags": ["a", "b"]}
    assert page.headers["Link"] == f'</v2/up/{repo}/tags/list?n=2&last=b>; rel="next"'
    rest = cache.get(f"/v2/up/{repo}/tags/list?n=2&last=b")
    assert rest.json()["tags"] == ["c"]
    assert "Link" not in rest.headers

    manifest(cache, repo, "a")
    manifest(cache, repo, "c")
    cache.proxy.fail(r"/v2/", 503)
    offline = cache.get(f"/v2/up/{repo}/tags/list")
    assert offline.status_code == 200
    assert offline.json()["tags"] == ["a", "c"]


def test_referrers_from_the_tag_schema_with_artifact_type_filter(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    subject = fixture_images.oci_app
    artifact = fixture_images.artifact
    path = f"/v2/up/team/oci-app/referrers/{subject.digest}"
    answer = cache.get(path)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == OCI_INDEX
    index = answer.json()
    assert index["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in index["manifests"]] == [artifact.digest]
    assert index["manifests"][0]["artifactType"] == artifact.artifact_type

    filtered = cache.get(path, params={"artifactType": artifact.artifact_type})
    assert [m["digest"] for m in filtered.json()["manifests"]] == [artifact.digest]
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    other = cache.get(path, params={"artifactType": "application/vnd.other"})
    assert other.json()["manifests"] == []

    nothing = cache.get(f"/v2/up/team/oci-app/referrers/{artifact.digest}")
    assert nothing.status_code == 200
    assert nothing.json()["manifests"] == []

    # The artifact itself pulls through, and referrers survive an upstream outage.
    assert manifest(cache, "team/oci-app", artifact.digest).content == artifact.manifest
    time.sleep(1.2)
    cache.proxy.fail(r"/v2/", 503)
    offline = cache.get(path)
    assert offline.status_code == 200
    assert [m["digest"] for m in json.loads(offline.content)["manifests"]] == [artifact.digest]


def test_catalog_lists_cached_repositories_with_pagination(cache: Cache) -> None:
    for repo, tag in (
        ("library/busybox", "latest"),
        ("team/oci-app", "v1"),
        ("team/many-layers", "v1"),
    ):
        assert manifest(cache, repo, tag).status_code == 200
    everything = cache.get("/v2/_catalog").json()["repositories"]
    assert everything == ["up/library/busybox", "up/team/many-layers", "up/team/oci-app"]
    first = cache.get("/v2/_catalog?n=2")
    assert first.json()["repositories"] == everything[:2]
    assert first.headers["Link"] == '</v2/_catalog?n=2&last=up/team/many-layers>; rel="next"'
    second = cache.get("/v2/_catalog?n=2&last=up/team/many-layers")
    assert second.json()["repositories"] == everything[2:]
