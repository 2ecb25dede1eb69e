"""`kill -9` in the middle of fills loses nothing committed and never exposes a partial blob."""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

SLOW_FILLS = 20
FAST_FILLS = 4


def stream_until_cut(cache: Cache, path: str, started: threading.Event) -> None:
    try:
        with httpx.stream("GET", cache.url(path), timeout=60) as response:
            for _ in response.iter_raw(64):
                started.set()
    except httpx.HTTPError:
        pass  # the server was killed under us: that is the point


def stored_files(cache: Cache) -> dict[str, bytes]:
    root = cache.server.data_dir / "blobs" / "sha256"
    return {f"sha256:{path.name}": path.read_bytes() for path in root.glob("*/*")}


def test_kill_during_fills_loses_nothing_committed_and_exposes_nothing_partial(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    # Only the blobs the clients ask for are filled: no eager fill of the rest.
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"workers": 2},
        eager_fill=False,
    )
    image = fixture_images.many_layers
    layers = sorted(image.blobs[1:], key=lambda b: b.digest)  # the 24 layers
    fast, slow = layers[:FAST_FILLS], layers[FAST_FILLS : FAST_FILLS + SLOW_FILLS]
    base = "/v2/up/team/many-layers/blobs/"
    assert cache.get(f"/v2/up/team/many-layers/manifests/{image.tag}").status_code == 200
    for blob in fast:
        assert cache.get(base + blob.digest).status_code == 200
        cache.committed(blob.digest)
    for blob in slow:  # about a minute each: surely mid-body when the server dies
        cache.proxy.throttle(blob.digest, max(1, blob.size // 60))

    started = [threading.Event() for _ in slow]
    clients = [
        threading.Thread(target=stream_until_cut, args=(cache, base + blob.digest, event))
        for blob, event in zip(slow, started, strict=True)
    ]
    for client in clients:
        client.start()
    wait_for(lambda: all(event.is_set() for event in started), 30, "every fill to stream")
    assert len(cache.spool_files()) >= SLOW_FILLS  # fills in progress on disk
    cache.server.kill()
    for client in clients:
        client.join(timeout=30)

    cache.proxy.clear_faults()
    cache.server.start()
    assert cache.spool_files() == []  # no temp files left
    stored = stored_files(cache)
    assert set(stored) == {blob.digest for blob in fast}  # nothing partial is visible
    for digest, content in stored.items():
        assert "sha256:" + hashlib.sha256(content).hexdigest() == digest

    cache.proxy.reset()
    for blob in fast + slow:
        response = cache.get(base + blob.digest)
        assert response.status_code == 200
        assert response.content == blob.read()
    assert cache.proxy.count("GET", path_contains="/blobs/") == SLOW_FILLS  # only the cut ones
    for blob in slow:
        cache.committed(blob.digest)
    assert set(stored_files(cache)) == {blob.digest for blob in fast + slow}
