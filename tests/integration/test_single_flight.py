"""Many clients, two worker processes, one cold image: upstream is asked once per blob and per
manifest, and every client streams bytes before the download has finished."""

from __future__ import annotations

import asyncio
import hashlib
import json

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


async def pull(cache: Cache, image: PushedImage, slow_digest: str) -> tuple[bool, dict[str, str]]:
    """One client: the manifest, then the slow blob first, then the rest. Returns whether the
    slow blob's first byte arrived before the blob was in the store, and the digest of
    everything received."""
    got: dict[str, str] = {}
    stored = cache.stored_blob(slow_digest)
    base = f"{cache.server.url}/v2/up/{image.repo}"
    async with httpx.AsyncClient(timeout=120) as client:
        manifest = await client.get(
            f"{base}/manifests/{image.tag}", headers={"Accept": OCI_MANIFEST}
        )
        assert manifest.status_code == 200, manifest.text
        got[image.digest] = "sha256:" + hashlib.sha256(manifest.content).hexdigest()
        digests = [slow_digest, *sorted(image.blob_digests() - {slow_digest})]
        before_commit: bool | None = None
        for digest in digests:
            hasher = hashlib.sha256()
            async with client.stream("GET", f"{base}/blobs/{digest}") as response:
                assert response.status_code == 200, digest
                async for chunk in response.aiter_raw():
                    if digest == slow_digest and before_commit is None and chunk:
                        before_commit = not stored.exists()
                    hasher.update(chunk)
            got[digest] = "sha256:" + hasher.hexdigest()
    return before_commit is True, got


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
    results = await asyncio.gather(*(pull(cache, image, slow.digest) for _ in range(CLIENTS)))

    expected = {digest: digest for digest in image.all_digests()}
    for _, got in results:
        assert got == expected
    for digest in image.blob_digests():
        assert cache.proxy.count("GET", path_contains=f"/blobs/{digest}") == 1, digest
    assert cache.proxy.count("GET", path_contains="/manifests/") == 1
    cache.committed(slow.digest)
    assert all(before for before, _ in results), "a client waited for the whole download"

    pids = {
        json.loads(line).get("pid")
        for line in cache.server.log_text().splitlines()
        if '"pullthrough.access"' in line and f"/blobs/{slow.digest}" in line
    }
    assert len(pids) == 2, f"both workers should have served the slow blob, saw {pids}"
