"""The rig itself works: upstreams in each auth mode serve the pushed images byte-exact, the
token flow works by hand, skopeo reads them, and each proxy fault does what it says."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.rig.images import ARTIFACT_TYPE, LARGE_FILE_SIZE, FixtureImages, RegistryPusher, retag
from tests.rig.oci_build import OCI_EMPTY
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy, skopeo_inspect_raw, verified_dir_digests
from tests.rig.token_issuer import TokenIssuer

pytestmark = pytest.mark.integration

ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def get_manifest(
    base: str,
    repo: str,
    ref: str,
    *,
    auth: tuple[str, str] | None = None,
    token: str | None = None,
) -> httpx.Response:
    headers = {"Accept": ACCEPT_ALL}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{base}/v2/{repo}/manifests/{ref}", headers=headers, auth=auth)


# --- upstream auth modes ------------------------------------------------------------------


def test_anonymous_pull_serves_the_pushed_manifest(
    upstreams: dict[AuthMode, UpstreamRegistry], fixture_images: FixtureImages
) -> None:
    image = fixture_images.oci_app
    response = get_manifest(upstreams["anonymous"].url, image.repo, "v1")
    assert response.status_code == 200
    assert response.content == image.manifest
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert response.headers["Content-Type"] == image.media_type


def test_basic_upstream_wants_credentials(
    upstreams: dict[AuthMode, UpstreamRegistry], fixture_images: FixtureImages
) -> None:
    registry = upstreams["basic"]
    image = fixture_images.oci_app
    anonymous = get_manifest(registry.url, image.repo, "v1")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert registry.credentials is not None
    authed = get_manifest(registry.url, image.repo, "v1", auth=registry.credentials)
    assert authed.status_code == 200
    assert authed.content == image.manifest
    wrong = get_manifest(registry.url, image.repo, "v1", auth=(registry.username or "", "wrong"))
    assert wrong.status_code == 401


def test_token_upstream_challenge_token_pull_by_hand(
    upstreams: dict[AuthMode, UpstreamRegistry],
    token_issuer: TokenIssuer,
    fixture_images: FixtureImages,
) -> None:
    registry = upstreams["token"]
    image = fixture_images.oci_app
    challenged = get_manifest(registry.url, image.repo, "v1")
    assert challenged.status_code == 401
    scheme, _, params_text = challenged.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    params = dict(_CHALLENGE_PARAM.findall(params_text))
    assert params["realm"] == token_issuer.realm
    assert params["scope"] == f"repository:{image.repo}:pull"

    before = token_issuer.count(scope_contains=image.repo)
    for credentials in (None, registry.credentials):
        token_response = httpx.get(
            params["realm"],
            params={"service": params["service"], "scope": params["scope"]},
            auth=credentials,
        )
        assert token_response.status_code == 200
        body = token_response.json()
        assert body["token"] == body["access_token"]
        assert body["expires_in"] == token_issuer.expires_in
        authed = get_manifest(registry.url, image.repo, "v1", token=body["token"])
        assert authed.status_code == 200
        assert authed.content == image.manifest

    assert token_issuer.count(scope_contains=image.repo) == before + 2
    assert [r.credentials_given for r in token_issuer.requests[-2:]] == [False, True]
    bad = httpx.get(params["realm"], params=params, auth=(registry.username or "", "wrong"))
    assert bad.status_code == 401


def test_token_issuer_answers_the_oauth2_password_grant(token_issuer: TokenIssuer) -> None:
    form = {
        "grant_type": "password",
        "service": token_issuer.service,
        "scope": "repository:team/oci-app:pull",
        "client_id": "rig-test",
        "username": token_issuer.username,
        "password": token_issuer.password,
    }
    granted = httpx.post(token_issuer.realm, data=form)
    assert granted.status_code == 200
    assert granted.json()["access_token"]
    refused = httpx.post(token_issuer.realm, data={**form, "password": "wrong"})
    assert refused.status_code == 401


def test_anonymous_token_cannot_push(
    upstreams: dict[AuthMode, UpstreamRegistry], token_issuer: TokenIssuer
) -> None:
    registry = upstreams["token"]
    token = httpx.get(
        token_issuer.realm,
        params={"service": token_issuer.service, "scope": "repository:rig/denied:pull,push"},
    ).json()["token"]
    opened = httpx.post(
        f"{registry.url}/v2/rig/denied/blobs/uploads/",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert opened.status_code == 401


@pytest.mark.parametrize("mode", ["anonymous", "basic", "token"])
def test_skopeo_inspect_raw_returns_the_pushed_bytes(
    mode: AuthMode, upstreams: dict[AuthMode, UpstreamRegistry], fixture_images: FixtureImages
) -> None:
    registry = upstreams[mode]
    for image in (fixture_images.oci_app, fixture_images.multi):
        raw = skopeo_inspect_raw(f"{registry.host}/{image.reference}", creds=registry.credentials)
        assert raw == image.manifest


# --- the fixture images -------------------------------------------------------------------


def test_every_fixture_manifest_and_blob_is_upstream(
    upstreams: dict[AuthMode, UpstreamRegistry], fixture_images: FixtureImages
) -> None:
    base = upstreams["anonymous"].url
    with httpx.Client(headers={"Accept": ACCEPT_ALL}) as client:
        for image in fixture_images.all():
            manifests = [image, *image.children]
            for manifest in manifests:
                response = client.get(f"{base}/v2/{manifest.repo}/manifests/{manifest.digest}")
                assert response.status_code == 200, manifest.reference
                assert response.content == manifest.manifest
                assert sha256(response.content) == manifest.digest
            tagged = client.get(f"{base}/v2/{image.repo}/manifests/{image.tag or image.digest}")
            assert tagged.headers["Docker-Content-Digest"] == image.digest
            for digest, blob in image.all_blobs().items():
                head = client.head(f"{base}/v2/{image.repo}/blobs/{digest}")
                assert head.status_code == 200, f"{image.reference} {digest}"
                assert int(head.headers["Content-Length"]) == blob.size


def test_fixture_images_are_real_images(fixture_images: FixtureImages) -> None:
    busybox = fixture_images.busybox
    config = json.loads(busybox.blobs[0].read())
    layers = busybox.blobs[1:]
    assert len(layers) == 2
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(b.read())) for b in layers]
    assert len(fixture_images.many_layers.blobs) == 1 + 24
    assert {c.platform["architecture"] for c in fixture_images.multi.children if c.platform} == {
        "amd64",
        "arm64",
    }
    assert len(fixture_images.multi.all_digests()) == 1 + 2 * (1 + 1 + 2)
    large_layer = fixture_images.large.blobs[1]
    assert large_layer.size >= LARGE_FILE_SIZE
    large_config = json.loads(fixture_images.large.blobs[0].read())
    assert large_config["rootfs"]["diff_ids"] == [large_layer.digest]

    artifact = json.loads(fixture_images.artifact.manifest)
    assert artifact["artifactType"] == ARTIFACT_TYPE
    assert artifact["config"]["mediaType"] == OCI_EMPTY
    assert artifact["subject"]["digest"] == fixture_images.oci_app.digest
    fallback = fixture_images.referrers_tag
    assert fallback.tag == fixture_images.oci_app.digest.replace(":", "-")
    listed = json.loads(fallback.manifest)["manifests"]
    assert listed == [fixture_images.artifact.descriptor()]


def test_skopeo_copies_every_platform_with_verified_digests(
    upstreams: dict[AuthMode, UpstreamRegistry], fixture_images: FixtureImages, tmp_path: Path
) -> None:
    for image in (fixture_images.multi, fixture_images.multi_docker):
        dest = tmp_path / image.repo.replace("/", "_")
        result = skopeo_copy(
            f"{upstreams['token'].host}/{image.reference}",
            dest,
            all_platforms=True,
            src_creds=upstreams["token"].credentials,
        )
        assert result.returncode == 0, result.stderr
        assert verified_dir_digests(dest) == image.all_digests()
        assert (dest / "manifest.json").read_bytes() == image.manifest


def test_registry_restarts_on_the_same_port(
    upstream_storage: Path, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    with UpstreamRegistry(upstream_storage, workdir=tmp_path) as registry:
        port = registry.port
        assert get_manifest(registry.url, "team/oci-app", "v1").status_code == 200
        registry.stop()
        with pytest.raises(httpx.ConnectError):
            get_manifest(registry.url, "team/oci-app", "v1")
        registry.start()
        assert registry.port == port
        assert get_manifest(registry.url, "team/oci-app", "v1").content == (
            fixture_images.oci_app.manifest
        )


# --- the counting proxy -------------------------------------------------------------------


def test_proxy_forwards_and_counts(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    image = fixture_images.oci_app
    layer = image.blobs[1]
    with httpx.Client() as client:
        manifest = get_manifest(proxy.url, image.repo, "v1")
        assert manifest.content == image.manifest
        assert manifest.headers["Docker-Content-Digest"] == image.digest
        head = client.head(f"{proxy.url}/v2/{image.repo}/blobs/{layer.digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == layer.size
        blob = client.get(f"{proxy.url}/v2/{image.repo}/blobs/{layer.digest}")
        assert blob.content == layer.read()
    assert proxy.requests == [
        ("GET", f"/v2/{image.repo}/manifests/v1"),
        ("HEAD", f"/v2/{image.repo}/blobs/{layer.digest}"),
        ("GET", f"/v2/{image.repo}/blobs/{layer.digest}"),
    ]
    assert proxy.count("GET") == 2
    assert proxy.count(path_contains="/blobs/") == 2
    assert proxy.count("HEAD", path_regex=r"/blobs/sha256:[0-9a-f]{64}$") == 1
    proxy.reset()
    assert proxy.count() == 0


def test_proxy_forwards_repeated_headers(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
) -> None:
    # skopeo sends one `Accept` line per media type; all of them must reach upstream.
    proxy = counting_proxy(upstreams["anonymous"].url)
    accepts = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
    response = httpx.get(
        f"{proxy.url}/v2/team/multi/manifests/latest",
        headers=[("Accept", accepts[0]), ("Accept", accepts[1])],
    )
    assert response.status_code == 200
    assert response.content == fixture_images.multi.manifest
    assert proxy.entries[-1].headers.getall("Accept") == accepts


def test_proxy_passes_auth_challenges_and_push_locations(
    upstreams: dict[AuthMode, UpstreamRegistry], counting_proxy: MakeProxy
) -> None:
    # A push through the proxy only completes if distribution's upload Location points back at
    # the proxy (the Host header is forwarded) and the token challenge passes unchanged.
    proxy = counting_proxy(upstreams["token"].url)
    with RegistryPusher(proxy.url, upstreams["token"].credentials) as pusher:
        first = retag(pusher, "rig/proxy-push", "v1", seed=1)
        second = retag(pusher, "rig/proxy-push", "v1", seed=2)
    assert first.digest != second.digest
    assert proxy.count("PUT", path_contains="/blobs/uploads/") == 6
    response = get_manifest(upstreams["anonymous"].url, "rig/proxy-push", "v1")
    assert response.headers["Docker-Content-Digest"] == second.digest


def test_proxy_corrupt_keeps_length_and_breaks_the_digest(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    layer = fixture_images.oci_app.blobs[1]
    url = f"{proxy.url}/v2/team/oci-app/blobs/{layer.digest}"
    proxy.corrupt(r"/blobs/", times=1)
    bad = httpx.get(url)
    assert bad.status_code == 200
    assert len(bad.content) == layer.size
    assert sha256(bad.content) != layer.digest
    good = httpx.get(url)
    assert sha256(good.content) == layer.digest


@pytest.mark.parametrize(
    ("status", "headers"), [(500, None), (503, None), (429, {"Retry-After": "2"})]
)
def test_proxy_fail_answers_without_upstream(
    status: int,
    headers: dict[str, str] | None,
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    proxy.fail(r"/manifests/", status, times=2, headers=headers)
    for _ in range(2):
        response = get_manifest(proxy.url, "team/oci-app", "v1")
        assert response.status_code == status
        for name, value in (headers or {}).items():
            assert response.headers[name] == value
    assert get_manifest(proxy.url, "team/oci-app", "v1").status_code == 200
    assert proxy.count(path_contains="/manifests/") == 3


@pytest.mark.parametrize("nbytes", [0, 100])
def test_proxy_drop_after_truncates_the_body(
    nbytes: int,
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    layer = fixture_images.oci_app.blobs[1]
    url = f"{proxy.url}/v2/team/oci-app/blobs/{layer.digest}"
    proxy.drop_after(r"/blobs/", nbytes, times=1)
    received = bytearray()
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == layer.size
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += chunk
    assert bytes(received) == layer.read()[:nbytes]
    assert httpx.get(url).content == layer.read()


def test_proxy_passes_range_requests(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    layer = fixture_images.oci_app.blobs[1]
    response = httpx.get(
        f"{proxy.url}/v2/team/oci-app/blobs/{layer.digest}", headers={"Range": "bytes=10-99"}
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 10-99/{layer.size}"
    assert response.content == layer.read()[10:100]


def test_proxy_delay_and_extra_headers(
    upstreams: dict[AuthMode, UpstreamRegistry], counting_proxy: MakeProxy
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    proxy.delay(r"/manifests/", 0.5, times=1)
    proxy.extra_headers(r"/manifests/", {"ratelimit-remaining": "99;w=21600"})
    started = time.monotonic()
    slow = get_manifest(proxy.url, "team/oci-app", "v1")
    assert time.monotonic() - started >= 0.5  # a lower bound: the proxy slept before answering
    assert slow.headers["ratelimit-remaining"] == "99;w=21600"
    get_manifest(proxy.url, "team/oci-app", "v1")
    # The delay held the first request only (times=1); the second was forwarded at once.
    assert [entry.delayed for entry in proxy.entries] == [0.5, 0.0]
    proxy.clear_faults()
    assert "ratelimit-remaining" not in get_manifest(proxy.url, "team/oci-app", "v1").headers


def test_proxy_answers_502_while_upstream_is_down(
    upstream_storage: Path, counting_proxy: MakeProxy, tmp_path: Path
) -> None:
    with UpstreamRegistry(upstream_storage, workdir=tmp_path) as registry:
        proxy = counting_proxy(registry.url)
        registry.stop()
        assert get_manifest(proxy.url, "team/oci-app", "v1").status_code == 502
        registry.start()
        assert get_manifest(proxy.url, "team/oci-app", "v1").status_code == 200


# --- the pullthrough server ---------------------------------------------------------------


def test_pullthrough_server_starts_stops_and_restarts(
    upstreams: dict[AuthMode, UpstreamRegistry], pullthrough_server: StartPullthrough
) -> None:
    rules = [{"prefix": "up", "upstream": upstreams["anonymous"].url}]
    server = pullthrough_server(rules)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
    server.start()
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    server.kill()
    assert not server.running
