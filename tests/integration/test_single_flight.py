"""Many clients, two worker processes, one cold image: upstream is asked once per blob and per
manifest, and every client streams bytes before the download has finished."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.oci_build import OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

CLIENTS = 50
FILL_SECONDS = 3.0


class CommitWatch:
    """Notes, from outside the server, the moment a blob file appears in the store."""

    def __init__(self, cache: Cache, digest: str) -> None:
        self._path = cache.stored_blob(digest)
        self.committed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._path.exists():
                self.committed_at = time.monotonic()
                return
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def pull(cache: Cache, image: PushedImage, slow_digest: str) -> tuple[float, dict[str, str]]:
    """One client: the manifest, then the slow blob first, then the rest. Returns the moment
    the slow blob's first byte arrived and the digest of everything received."""
    got: dict[str, str] = {}
    base = f"{cache.server.url}/v2/up/{image.repo}"
    async with httpx.AsyncClient(timeout=120) as client:
        manifest = await client.get(
            f"{base}/manifests/{image.tag}", headers={"Accept": OCI_MANIFEST}
        )
        assert manifest.status_code == 200, manifest.text
        got[image.digest] = "sha256:" + hashlib.sha256(manifest.content).hexdigest()
        digests = [slow_digest, *sorted(image.blob_digests() - {slow_digest})]
        first_byte_at = 0.0
        for digest in digests:
            hasher = hashlib.sha256()
            async with client.stream("GET", f"{base}/blobs/{digest}") as response:
                assert response.status_code == 200, digest
                async for chunk in response.aiter_raw():
                    if digest == slow_digest and not first_byte_at and chunk:
                        first_byte_at = time.monotonic()
                    hasher.update(chunk)
            got[digest] = "sha256:" + hasher.hexdigest()
    return first_byte_at, got


async def test_fifty_clients_on_two_workers_cost_one_upstream_fetch_each(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], settings={"workers": 2}
    )
    image = fixture_images.many_layers
    slow = max(image.blobs, key=lambda b: b.size)
    cache.proxy.throttle(slow.digest, max(1, int(slow.size / FILL_SECONDS)))
    watch = CommitWatch(cache, slow.digest)
    try:
        results = await asyncio.gather(*(pull(cache, image, slow.digest) for _ in range(CLIENTS)))
    finally:
        watch.stop()

    expected = {digest: digest for digest in image.all_digests()}
    for _, got in results:
        assert got == expected
    for digest in image.blob_digests():
        assert cache.proxy.count("GET", path_contains=f"/blobs/{digest}") == 1, digest
    assert cache.proxy.count("GET", path_contains="/manifests/") == 1
    assert watch.committed_at is not None
    first_bytes = [first for first, _ in results]
    assert max(first_bytes) < watch.committed_at, "a client waited for the whole download"

    pids = {
        json.loads(line).get("pid")
        for line in cache.server.log_text().splitlines()
        if '"pullthrough.access"' in line and f"/blobs/{slow.digest}" in line
    }
    assert len(pids) == 2, f"both workers should have served the slow blob, saw {pids}"
