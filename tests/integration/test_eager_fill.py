"""Eager fill: a cold image manifest fetched for a client starts its config and layers filling,
through the same single-flight as the client's own blob GETs.

A real upstream registry behind the counting proxy, a real pullthrough server; what is checked
is what an operator sees: upstream GETs per blob, blobs in the store, the client's digests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, sha256, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage, RegistryPusher, retag
from tests.rig.oci_build import OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ACCEPT = {
    "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json"
}
# Long enough for an eager fill that was started to reach upstream over loopback; used only to
# show that nothing was started (what was started is waited for, never timed).
SETTLE_SECONDS = 2.0
# Docker, containerd and podman fetch this many layers at once.
CLIENT_PARALLEL = 3


def blob_gets(cache: Cache, digest: str) -> int:
    return cache.proxy.count("GET", path_contains=f"/blobs/{digest}")


def settled_blob_gets(cache: Cache) -> int:
    """Upstream blob GETs once anything started has had time to reach upstream."""
    time.sleep(SETTLE_SECONDS)
    return cache.upstream_blob_gets()


def all_committed(cache: Cache, digests: set[str]) -> None:
    for digest in digests:
        cache.committed(digest)


async def pull_blobs(cache: Cache, image: PushedImage) -> dict[str, str]:
    """A client's pull after the manifest: config and layers, CLIENT_PARALLEL at a time, in
    manifest order; the digest of each blob received."""
    base = f"{cache.server.url}/v2/up/{image.repo}/blobs"
    limit = asyncio.Semaphore(CLIENT_PARALLEL)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one(digest: str) -> tuple[str, str]:
            async with limit:
                response = await client.get(f"{base}/{digest}")
                assert response.status_code == 200, (digest, response.text)
                return digest, sha256(response.content)

        got = await asyncio.gather(*(one(blob.digest) for blob in image.blobs))
    return dict(got)


def test_a_manifest_alone_warms_its_image_each_blob_fetched_once(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    image = fixture_images.many_layers
    manifest = cache.get(f"/v2/up/{image.repo}/manifests/{image.tag}", headers=ACCEPT)
    assert manifest.status_code == 200, manifest.text
    assert sha256(manifest.content) == image.digest

    all_committed(cache, image.blob_digests())
    for digest in image.blob_digests():
        assert blob_gets(cache, digest) == 1, digest
    got = asyncio.run(pull_blobs(cache, image))
    assert got == {digest: digest for digest in image.blob_digests()}
    assert cache.upstream_blob_gets() == len(image.blob_digests())  # the pull cost nothing more


def test_a_client_pulling_at_once_joins_the_eager_fills_on_two_workers(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], settings={"workers": 2}
    )
    image = fixture_images.many_layers
    # Slow blobs keep eager fills in flight while the client asks for the same blobs.
    for blob in image.blobs[::4]:
        cache.proxy.throttle(blob.digest, max(1, blob.size // 2))

    async def pull() -> dict[str, str]:
        async with httpx.AsyncClient(timeout=120) as client:
            manifest = await client.get(
                f"{cache.server.url}/v2/up/{image.repo}/manifests/{image.tag}", headers=ACCEPT
            )
            assert manifest.status_code == 200, manifest.text
            assert sha256(manifest.content) == image.digest
        return await pull_blobs(cache, image)

    got = asyncio.run(pull())
    assert got == {digest: digest for digest in image.blob_digests()}
    for digest in image.blob_digests():
        assert blob_gets(cache, digest) == 1, digest
    all_committed(cache, image.blob_digests())
    assert cache.upstream_blob_gets() == len(image.blob_digests())


def test_only_the_platform_the_client_resolved_is_filled(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    index = fixture_images.multi
    amd64, arm64 = index.child("amd64"), index.child("arm64")
    response = cache.get(f"/v2/up/{index.repo}/manifests/{index.tag}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert sha256(response.content) == index.digest
    assert settled_blob_gets(cache) == 0  # an index starts nothing

    response = cache.get(f"/v2/up/{index.repo}/manifests/{amd64.digest}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    all_committed(cache, amd64.blob_digests())
    for digest in amd64.blob_digests():
        assert blob_gets(cache, digest) == 1, digest
    assert settled_blob_gets(cache) == len(amd64.blob_digests())
    for digest in arm64.blob_digests():
        assert blob_gets(cache, digest) == 0, digest
        assert not cache.stored_blob(digest).exists(), digest


def test_the_rule_switch_off_fills_nothing_until_asked(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], eager_fill=False
    )
    image = fixture_images.oci_app
    response = cache.get(f"/v2/up/{image.repo}/manifests/{image.tag}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert settled_blob_gets(cache) == 0
    rule = cache.get("/api/v1/rules/up")  # the admin API shows the switch as the rule has it
    assert rule.status_code == 200, rule.text
    assert rule.json()["eager_fill"] is False

    layer = image.blobs[-1]
    got = cache.get(f"/v2/up/{image.repo}/blobs/{layer.digest}")
    assert got.status_code == 200
    assert sha256(got.content) == layer.digest
    assert settled_blob_gets(cache) == 1


def test_an_image_larger_than_the_size_cap_is_not_filled_eagerly(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    image = fixture_images.many_layers
    total = sum(blob.size for blob in image.blobs)
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"lifecycle": {"max_size": total - 1, "interval": 0}},
    )
    response = cache.get(f"/v2/up/{image.repo}/manifests/{image.tag}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert settled_blob_gets(cache) == 0
    assert "exceed lifecycle.max_size" in cache.server.log_text()


def test_a_failing_eager_fetch_costs_the_client_nothing(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    image = fixture_images.busybox
    config, failing, corrupt = image.blobs[0], image.blobs[1], image.blobs[2]
    cache.proxy.fail(failing.digest, 500)
    cache.proxy.corrupt(corrupt.digest)

    response = cache.get(f"/v2/up/{image.repo}/manifests/{image.tag}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert sha256(response.content) == image.digest
    cache.committed(config.digest)  # the healthy blob is filled eagerly all the same
    wait_for(lambda: blob_gets(cache, failing.digest) >= 1, 30, "the failing eager GET")
    wait_for(lambda: blob_gets(cache, corrupt.digest) >= 1, 30, "the corrupt eager GET")
    assert not cache.stored_blob(corrupt.digest).exists()  # a wrong blob is never stored

    # The eager failures are not remembered: the client's own GETs fill the blobs.
    cache.proxy.clear_faults()
    wait_for(lambda: not cache.spool_files(), 30, "the failed fills to end")
    for blob in (failing, corrupt):
        got = cache.get(f"/v2/up/{image.repo}/blobs/{blob.digest}")
        assert got.status_code == 200, got.text
        assert sha256(got.content) == blob.digest
        cache.committed(blob.digest)


# -- registry:ImportUpstream -----------------------------------------------------------------

PASSWORDS = {"importer": "importer-Secret-1", "reader": "reader-Secret-2"}
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReaderReads",
            "Effect": "Allow",
            "Principal": {"User": ["reader"]},
            "Action": "registry:Pull",
            "Resource": "repository/up/*",
        },
        {
            "Sid": "ImporterImports",
            "Effect": "Allow",
            "Principal": {"User": ["importer"]},
            "Action": ["registry:Pull", "registry:ImportUpstream"],
            "Resource": "repository/up/*",
        },
    ],
}


def pull_manifest(cache: Cache, user: str, repo: str, reference: str) -> httpx.Response:
    basic = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    token = cache.get(
        "/token",
        params={"service": "pullthrough", "scope": f"repository:up/{repo}:pull"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert token.status_code == 200, token.text
    return cache.get(
        f"/v2/up/{repo}/manifests/{reference}",
        headers={**ACCEPT, "Authorization": f"Bearer {token.json()['token']}"},
    )


def test_a_principal_that_may_not_import_starts_no_eager_fill(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    upstream = upstreams["anonymous"]
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        settings={"auth": {"enabled": True}},
        tag_ttl=0,  # every pull revalidates the tag upstream
    )
    for user in PASSWORDS:
        cache.server.command("users", "add", user, stdin=PASSWORDS[user])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    cache.server.command("policy", "put", "-f", str(policy))
    time.sleep(1.1)  # the server re-reads the policy at most once a second

    repo, tag = "team/eager-import", "v1"
    with RegistryPusher(upstream.url) as pusher:
        first = retag(pusher, repo, tag)
    response = pull_manifest(cache, "importer", repo, tag)
    assert response.status_code == 200, response.text
    all_committed(cache, first.blob_digests())  # the importer's pull fills eagerly

    # The tag moves upstream; the reader's pull fetches the new manifest (refreshing a cached
    # tag is part of pulling it) but may not bring its blobs in.
    with RegistryPusher(upstream.url) as pusher:
        second = retag(pusher, repo, tag)
    before = cache.upstream_blob_gets()
    refused = pull_manifest(cache, "reader", repo, tag)
    assert refused.status_code == 403, refused.text
    assert "registry:ImportUpstream" in refused.text
    assert settled_blob_gets(cache) == before
    for digest in second.blob_digests():
        assert cache.proxy.count(path_contains=f"/blobs/{digest}") == 0, digest
        assert not cache.stored_blob(digest).exists()
