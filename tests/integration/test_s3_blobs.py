"""Blobs on S3 (a real Swift s3api server): skopeo pulls cold and warm, each blob fetched from
upstream once and streamed into the bucket while it downloads, visible there only once verified;
a wrong upstream blob leaves neither an object nor an unfinished upload; hits are read from the
bucket (ranges too) or, with `storage.redirect_blobs`, redirected to presigned URLs."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, sha256, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.proxy import CountingProxy
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.s3server import S3Server
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = [pytest.mark.integration, pytest.mark.s3]

PREFIX = "cache"
CLIENTS = 24
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class Bucket:
    """What is in the test's bucket, asked of the S3 server directly (not through the proxy)."""

    def __init__(self, server: S3Server, name: str) -> None:
        self.server = server
        self.name = name

    @staticmethod
    def key(digest: str) -> str:
        algorithm, hex_digest = digest.split(":")
        return f"{PREFIX}/blobs/{algorithm}/{hex_digest[:2]}/{hex_digest}"

    def keys(self) -> set[str]:
        response = self.server.request("GET", f"/{self.name}", {"prefix": f"{PREFIX}/"})
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)  # noqa: S314 (the test's own S3 server)
        return {e.text or "" for e in root.iter(f"{_S3_NS}Key")}

    def uploads(self) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted."""
        response = self.server.request("GET", f"/{self.name}", {"uploads": ""})
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)  # noqa: S314 (the test's own S3 server)
        return [e.text or "" for e in root.iter(f"{_S3_NS}UploadId")]

    def get(self, digest: str) -> bytes | None:
        response = self.server.request("GET", f"/{self.name}/{self.key(digest)}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.content


def start_s3_cache(
    upstream: UpstreamRegistry,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: str,
    *,
    redirect: bool = False,
) -> tuple[Cache, CountingProxy]:
    """A cache with its blobs in `bucket`, reached through a counting proxy in front of the S3
    server (the proxy keeps the Host header, so signatures hold)."""
    s3_proxy = counting_proxy(s3_server.endpoint)
    storage = {
        "url": f"s3://{bucket}/{PREFIX}",
        "endpoint": s3_proxy.url,
        "region": s3_server.region,
        "path_style": True,
        "access_key_id": s3_server.access_key,
        "secret_access_key": s3_server.secret_key,
        "redirect_blobs": redirect,
        "redirect_ttl": 120,
    }
    cache = start_cache(counting_proxy, pullthrough_server, upstream, {"storage": storage})
    return cache, s3_proxy


@pytest.fixture
def bucket(s3_server: S3Server, s3_bucket: str) -> Bucket:
    return Bucket(s3_server, s3_bucket)


def test_skopeo_pulls_cold_then_warm_with_blobs_in_the_bucket(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: Bucket,
    tmp_path: Path,
) -> None:
    cache, _ = start_s3_cache(
        upstreams["anonymous"], counting_proxy, pullthrough_server, s3_server, bucket.name
    )
    image = fixture_images.oci_app
    cold = skopeo_copy(cache.ref(image.reference), tmp_path / "cold")
    assert cold.returncode == 0, cold.stderr
    assert verified_dir_digests(tmp_path / "cold") == image.all_digests()
    assert cache.upstream_blob_gets() == len(image.blob_digests())

    expected = {bucket.key(d) for d in image.blob_digests()}
    wait_for(lambda: bucket.keys() == expected, 30, "every blob to be in the bucket")
    for digest in image.blob_digests():
        stored = bucket.get(digest)
        assert stored is not None and sha256(stored) == digest
    assert bucket.uploads() == []
    assert not any(p.is_file() for p in (cache.server.data_dir / "blobs").rglob("*"))

    cache.proxy.reset()
    warm = skopeo_copy(cache.ref(image.reference), tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr
    assert verified_dir_digests(tmp_path / "warm") == image.all_digests()
    assert cache.upstream_blob_gets() == 0

    # A hit is read from the bucket, a range of it too.
    layer = max(image.blobs, key=lambda b: b.size)
    path = f"/v2/up/{image.repo}/blobs/{layer.digest}"
    whole = cache.get(path)
    assert whole.status_code == 200
    assert whole.headers["X-Pullthrough-Cache"] == "hit"
    assert sha256(whole.content) == layer.digest
    part = cache.get(path, headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1123/{layer.size}"
    assert part.content == whole.content[100:1124]
    assert cache.upstream_blob_gets() == 0


async def test_clients_on_two_workers_share_one_fill_into_the_bucket(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: Bucket,
) -> None:
    s3_proxy = counting_proxy(s3_server.endpoint)
    storage = {
        "url": f"s3://{bucket.name}/{PREFIX}",
        "endpoint": s3_proxy.url,
        "region": s3_server.region,
        "path_style": True,
        "access_key_id": s3_server.access_key,
        "secret_access_key": s3_server.secret_key,
    }
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        {"storage": storage, "workers": 2},
    )
    image = fixture_images.many_layers
    slow = max(image.blobs, key=lambda b: b.size)
    cache.proxy.throttle(slow.digest, max(1, slow.size // 3))  # about 3 s
    url = cache.url(f"/v2/up/{image.repo}/blobs/{slow.digest}")

    async def fetch() -> str:
        # A client of its own each: its connection may land on either worker.
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.get(url)
        assert response.status_code == 200, response.text
        return sha256(response.content)

    # The lead's and the follower's clients, while the blob downloads ...
    during = await asyncio.gather(*(fetch() for _ in range(CLIENTS)))
    await asyncio.to_thread(wait_for, lambda: bucket.get(slow.digest) is not None, 30, "the object")
    # ... and after the commit, when both workers read the object.
    after = await asyncio.gather(*(fetch() for _ in range(CLIENTS)))
    assert set(during) == set(after) == {slow.digest}
    assert cache.proxy.count("GET", path_contains=f"/blobs/{slow.digest}") == 1
    assert bucket.get(slow.digest) is not None
    assert bucket.uploads() == []
    served = [
        json.loads(line)
        for line in cache.server.log_text().splitlines()
        if '"pullthrough.access"' in line and f"/blobs/{slow.digest}" in line
    ]
    # The fill's worker and the one following it both streamed it, then both read the object.
    for kind in ("miss", "hit"):
        pids = {entry["pid"] for entry in served if entry.get("cache") == kind}
        assert len(pids) == 2, f"both workers should have served {kind}es, saw {pids}"


def test_a_wrong_upstream_blob_leaves_no_object_and_no_upload(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: Bucket,
) -> None:
    cache, _ = start_s3_cache(
        upstreams["anonymous"], counting_proxy, pullthrough_server, s3_server, bucket.name
    )
    # Over 256 MiB: the fill streams many parts of a multipart upload before it can verify.
    (layer,) = [b for b in fixture_images.large.blobs if b.size >= 256 * 1024 * 1024]
    cache.proxy.corrupt(layer.digest)
    url = cache.url(f"/v2/up/{fixture_images.large.repo}/blobs/{layer.digest}")
    received = 0
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received >= 64 * 1024 * 1024 and received - len(chunk) < 64 * 1024 * 1024:
                # Mid-download nothing is visible at the key, whatever was uploaded so far.
                assert bucket.get(layer.digest) is None
    assert received < layer.size  # cut short of the last byte
    wait_for(lambda: bucket.uploads() == [], 30, "the fill's upload to be aborted")
    assert bucket.get(layer.digest) is None
    assert bucket.keys() == set()
    assert cache.upstream_blob_gets() == 1


def test_redirected_hits_are_fetched_from_the_bucket(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: Bucket,
    tmp_path: Path,
) -> None:
    cache, s3_proxy = start_s3_cache(
        upstreams["anonymous"],
        counting_proxy,
        pullthrough_server,
        s3_server,
        bucket.name,
        redirect=True,
    )
    image = fixture_images.oci_app
    blob_keys = {bucket.key(d) for d in image.blob_digests()}

    # Cold: misses are streamed by the server (the bucket has nothing to redirect to yet).
    cold = skopeo_copy(cache.ref(image.reference), tmp_path / "cold")
    assert cold.returncode == 0, cold.stderr
    assert verified_dir_digests(tmp_path / "cold") == image.all_digests()
    wait_for(lambda: bucket.keys() == blob_keys, 30, "every blob to be in the bucket")

    # Warm: every blob GET is answered 307 and skopeo fetches the object with a signed URL.
    cache.proxy.reset()
    s3_proxy.reset()
    warm = skopeo_copy(cache.ref(image.reference), tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr
    assert verified_dir_digests(tmp_path / "warm") == image.all_digests()
    assert cache.upstream_blob_gets() == 0
    signed_gets = [
        e.path.removeprefix(f"/{bucket.name}/")
        for e in s3_proxy.entries
        if e.method == "GET" and "X-Amz-Signature=" in e.query
    ]
    assert sorted(signed_gets) == sorted(blob_keys)

    layer = max(image.blobs, key=lambda b: b.size)
    path = f"/v2/up/{image.repo}/blobs/{layer.digest}"
    redirected = cache.get(path)
    assert redirected.status_code == 307
    assert redirected.headers["Docker-Content-Digest"] == layer.digest
    assert redirected.headers["X-Pullthrough-Cache"] == "hit"
    assert redirected.content == b""
    location = redirected.headers["Location"]
    assert urlsplit(location).netloc == urlsplit(s3_proxy.url).netloc
    assert re.search(r"X-Amz-Expires=120\b", location)

    # HEAD is answered by the server, with the size.
    head = cache.head(path)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == layer.size
    assert "Location" not in head.headers

    # A range is redirected too; the client sends its Range to the bucket.
    ranged = cache.get(path, headers={"Range": "bytes=10-1033"})
    assert ranged.status_code == 307
    part = httpx.get(ranged.headers["Location"], headers={"Range": "bytes=10-1033"}, timeout=30)
    assert part.status_code == 206
    followed = cache.get(path, headers={"Range": "bytes=10-1033"}, follow_redirects=True)
    assert followed.status_code == 206
    whole = bucket.get(layer.digest)
    assert whole is not None
    assert part.content == followed.content == whole[10:1034]
    assert sha256(whole) == layer.digest


def test_an_object_gone_from_the_bucket_is_fetched_again_on_its_next_pull(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    s3_server: S3Server,
    bucket: Bucket,
) -> None:
    """The bucket is shared and outlives any one server, so a start does not check every
    object (one request each); a pull that finds its blob's object gone forgets the row and
    fetches the blob from upstream again, and the bucket has it again afterwards."""
    cache, _ = start_s3_cache(
        upstreams["anonymous"], counting_proxy, pullthrough_server, s3_server, bucket.name
    )
    image = fixture_images.oci_app
    layer = max(image.blobs, key=lambda b: b.size)
    path = f"/v2/up/{image.repo}/blobs/{layer.digest}"
    assert sha256(cache.get(path).content) == layer.digest
    wait_for(lambda: bucket.get(layer.digest) is not None, 30, "the blob to be in the bucket")

    gone = s3_server.request("DELETE", f"/{bucket.name}/{bucket.key(layer.digest)}")
    assert gone.status_code == 204, gone.text
    cache.server.stop()
    cache.server.start()  # starts without looking at the bucket's objects
    cache.proxy.reset()

    again = cache.get(path)
    assert again.status_code == 200
    assert sha256(again.content) == layer.digest
    assert cache.upstream_blob_gets() == 1
    wait_for(lambda: bucket.get(layer.digest) is not None, 30, "the blob to be stored again")
    cache.proxy.reset()
    assert sha256(cache.get(path).content) == layer.digest
    assert cache.upstream_blob_gets() == 0
