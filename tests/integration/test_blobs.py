"""Blobs through the cache: ranges, verification of what upstream sends, fills that outlive
their client, and repositories that cannot read each other's blobs."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, sha256, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.pusher import Blob, RegistryPusher
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    return start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])


def biggest_layer(fixture_images: FixtureImages) -> Blob:
    return max(fixture_images.oci_app.blobs, key=lambda b: b.size)


def test_range_reads_of_cold_and_cached_blobs(cache: Cache, fixture_images: FixtureImages) -> None:
    layer = biggest_layer(fixture_images)
    content = layer.read()
    path = f"/v2/up/team/oci-app/blobs/{layer.digest}"
    cases = [
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, len(content)),
        ("bytes=-50", len(content) - 50, len(content)),
        (f"bytes=10-{len(content) + 500}", 10, len(content)),
    ]
    # Cold: the first request starts the fill and is answered from the growing download.
    cold = cache.get(path, headers={"Range": cases[0][0]})
    assert cold.status_code == 206
    assert cold.content == content[:100]
    assert cold.headers["Content-Range"] == f"bytes 0-99/{len(content)}"
    assert cold.headers["Docker-Content-Digest"] == layer.digest
    wait_for(lambda: cache.stored_blob(layer.digest).exists(), 30, "the fill to commit")
    cache.proxy.reset()
    for header, start, end in cases:
        warm = cache.get(path, headers={"Range": header})
        assert warm.status_code == 206, header
        assert warm.content == content[start:end], header
        assert warm.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(content)}"
    whole = cache.get(path)
    assert whole.status_code == 200
    assert sha256(whole.content) == layer.digest
    outside = cache.get(path, headers={"Range": f"bytes={len(content)}-"})
    assert outside.status_code == 416
    assert outside.headers["Content-Range"] == f"bytes */{len(content)}"
    assert outside.json()["errors"][0]["code"] == "RANGE_INVALID"
    assert cache.proxy.requests == []


def test_cold_range_of_an_uncached_blob_mid_file(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    layer = max(fixture_images.many_layers.blobs, key=lambda b: b.size)
    content = layer.read()
    middle = len(content) // 2
    response = cache.get(
        f"/v2/up/team/many-layers/blobs/{layer.digest}",
        headers={"Range": f"bytes={middle}-{middle + 9}"},
    )
    assert response.status_code == 206
    assert response.content == content[middle : middle + 10]


def test_wrong_bytes_from_upstream_fail_the_pull_and_store_nothing(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    image = fixture_images.oci_app
    layer = biggest_layer(fixture_images)
    cache.proxy.corrupt(layer.digest)
    broken = skopeo_copy(cache.ref(image.reference), tmp_path / "broken")
    assert broken.returncode != 0
    # The cache cuts the connection before the last byte: the client never has the blob.
    url = cache.url(f"/v2/up/team/oci-app/blobs/{layer.digest}")
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        response.read()
    assert not cache.stored_blob(layer.digest).exists()
    assert cache.spool_files() == []

    cache.proxy.clear_faults()
    fixed = skopeo_copy(cache.ref(image.reference), tmp_path / "fixed")
    assert fixed.returncode == 0, fixed.stderr
    assert verified_dir_digests(tmp_path / "fixed") == image.all_digests()
    assert sha256(cache.committed(layer.digest).read_bytes()) == layer.digest


@dataclass
class _Reading:
    """What one client of a blob got: its status, length header, bytes, and how it ended."""

    request_id: str = ""
    status: int = 0
    length: int = 0
    received: bytes = b""
    cut: bool = False


def _read_blob(url: str, reading: _Reading) -> None:
    reading.request_id = os.urandom(8).hex()  # a streamed answer's headers go before the id's
    try:
        with httpx.stream(
            "GET", url, headers={"X-Request-Id": reading.request_id}, timeout=60
        ) as response:
            reading.status = response.status_code
            reading.length = int(response.headers.get("Content-Length", "0"))
            data = bytearray()
            try:
                for chunk in response.iter_raw(1 << 16):
                    data.extend(chunk)
            finally:
                reading.received = bytes(data)
    except httpx.HTTPError:
        reading.cut = True


def test_wrong_bytes_cut_every_reader_of_the_growing_fill_in_every_worker(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    """Readers of a cold blob in the worker that downloads it (sent from memory at the head,
    by sendfile from the spool file behind it) and in the other worker (sendfile, following the
    spool file) all lose their connection short of the last byte when the digest turns out
    wrong; nothing is stored, and upstream was asked once."""
    upstream = upstreams["anonymous"]
    cache = start_cache(counting_proxy, pullthrough_server, upstream, settings={"workers": 2})
    content = os.urandom(8 << 20)
    blob = Blob.of(content, "application/octet-stream")
    with RegistryPusher(upstream.url) as pusher:
        pusher.push_blob("team/wrong-bytes", blob)
    cache.proxy.corrupt(blob.digest)
    cache.proxy.throttle(blob.digest, 2 << 20)  # about 4 s: clients come while it grows
    url = cache.url(f"/v2/up/team/wrong-bytes/blobs/{blob.digest}")

    # The kernel spreads connections over the workers by a hash of their ports: with 16
    # readers, all of them landing in one worker is a 1 in 32,768 chance.
    readings = [_Reading() for _ in range(16)]
    threads = [threading.Thread(target=_read_blob, args=(url, r)) for r in readings]
    for thread in threads:
        thread.start()
        time.sleep(0.12)  # the later ones join a fill already under way
    for thread in threads:
        thread.join(90)

    for reading in readings:
        assert reading.status == 200
        assert reading.length == blob.size
        assert reading.cut
        assert len(reading.received) < blob.size
    # Bytes before the corruption are the blob's own: they came from the one download.
    assert any(len(r.received) > 1 << 20 for r in readings)
    ids = {r.request_id for r in readings}
    wait_for(lambda: len(cache.server.served_by(ids)) == len(ids), 10, "the log lines")
    assert len(set(cache.server.served_by(ids).values())) == 2  # both workers had readers
    assert cache.upstream_blob_gets() == 1
    assert not cache.stored_blob(blob.digest).exists()
    wait_for(lambda: cache.spool_files() == [], 10, "the failed fill's spool file to go")


def test_a_client_leaving_halfway_leaves_a_complete_verified_blob(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    (layer,) = [b for b in fixture_images.large.blobs if b.size >= 256 * 1024 * 1024]
    # Slow the upstream so the client is surely gone before the download ends.
    cache.proxy.delay(layer.digest, 0.5, times=1)
    request = (
        f"GET /v2/up/team/large/blobs/{layer.digest} HTTP/1.1\r\n"
        f"Host: {cache.server.host}\r\nConnection: close\r\n\r\n"
    ).encode()
    host, port = cache.server.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(request)
        received = 0
        while received < layer.size // 2:
            chunk = conn.recv(1 << 20)
            assert chunk, "the cache closed the connection early"
            received += len(chunk)
    # The client is gone; the fill goes on and commits.
    stored = cache.stored_blob(layer.digest)
    wait_for(stored.exists, 120, "the abandoned fill to commit")
    assert stored.stat().st_size == layer.size
    assert cache.upstream_blob_gets() == 1
    cache.proxy.reset()
    with httpx.stream(
        "GET", cache.url(f"/v2/up/team/large/blobs/{layer.digest}"), timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(layer.size)
        hasher_total = 0
        hasher = hashlib.sha256()
        for chunk in response.iter_bytes(1 << 20):
            hasher.update(chunk)
            hasher_total += len(chunk)
    assert f"sha256:{hasher.hexdigest()}" == layer.digest
    assert hasher_total == layer.size
    assert cache.proxy.requests == []
    assert cache.spool_files() == []


def test_a_repository_cannot_read_another_repositorys_blob(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    image = fixture_images.oci_app
    assert skopeo_copy(cache.ref(image.reference), tmp_path / "copy").returncode == 0
    layer = biggest_layer(fixture_images)
    cache.committed(layer.digest)
    cache.proxy.reset()
    # busybox's upstream repository does not have oci-app's layer: the cache asks and refuses.
    leak = cache.get(f"/v2/up/library/busybox/blobs/{layer.digest}")
    assert leak.status_code == 404
    assert leak.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert cache.proxy.count("HEAD", path_contains=layer.digest) == 1
    assert cache.proxy.count("GET", path_contains=layer.digest) == 0
    head = cache.head(f"/v2/up/library/busybox/blobs/{layer.digest}")
    assert head.status_code == 404
    # The owner still reads it from the cache with no upstream request.
    cache.proxy.reset()
    owner = cache.get(f"/v2/up/team/oci-app/blobs/{layer.digest}")
    assert owner.status_code == 200
    assert sha256(owner.content) == layer.digest
    assert cache.proxy.requests == []


def test_blob_head_from_cache_and_cold(cache: Cache, fixture_images: FixtureImages) -> None:
    layer = biggest_layer(fixture_images)
    path = f"/v2/up/team/oci-app/blobs/{layer.digest}"
    cold = cache.head(path)
    assert cold.status_code == 200
    assert cold.headers["Content-Length"] == str(layer.size)
    assert cold.headers["Docker-Content-Digest"] == layer.digest
    assert not cache.stored_blob(layer.digest).exists()  # a HEAD does not download
    cache.get(path)
    cache.proxy.reset()
    warm = cache.head(path)
    assert warm.headers["Content-Length"] == str(layer.size)
    assert cache.proxy.requests == []


def test_restart_drops_leftovers_and_refetches_a_vanished_blob(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    layer = biggest_layer(fixture_images)
    path = f"/v2/up/team/oci-app/blobs/{layer.digest}"
    assert sha256(cache.get(path).content) == layer.digest
    cache.committed(layer.digest)
    cache.server.stop()
    leftover = cache.server.data_dir / "tmp" / "abandoned.part"
    leftover.write_bytes(b"half a blob")
    cache.stored_blob(layer.digest).unlink()
    cache.server.start()
    assert cache.spool_files() == []
    cache.proxy.reset()
    again = cache.get(path)
    assert again.status_code == 200
    assert sha256(again.content) == layer.digest
    assert cache.upstream_blob_gets() == 1
    cache.committed(layer.digest)
