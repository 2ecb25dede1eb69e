"""A replica streams another replica's fill over its fills endpoint: a real pullthrough server
(the leading replica) fills a blob from a slowed upstream, and a `PeerFill` — what a replica
that does not lead runs — follows it from its `/_pullthrough/fills/` endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from pullthrough.access.peer_tokens import PeerTokens
from pullthrough.cache.fill.peer import (
    FILLS_PATH,
    OFFSET_HEADER,
    SIZE_HEADER,
    STATE_HEADER,
    PeerFill,
)
from pullthrough.cache.fill.state import FillState
from pullthrough.errors import RegistryError
from pullthrough.oci.digest import Digest
from pullthrough.storage.filesystem import FilesystemDriver
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.pusher import Blob
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

FILL_SECONDS = 3.0


@pytest.fixture
def leader(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    return start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])


@pytest.fixture
def layer(fixture_images: FixtureImages) -> Blob:
    return max(fixture_images.oci_app.blobs, key=lambda b: b.size)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def tokens_of(cache: Cache) -> PeerTokens:
    """Peer tokens under the leading replica's token key, as every replica shares it."""
    return PeerTokens(bytes.fromhex((cache.server.data_dir / "token.key").read_text().strip()))


async def start_fill_through_client(cache: Cache, layer: Blob) -> asyncio.Task[str]:
    """A client pulls the blob from the leading replica, which starts its fill; returns once
    the client has its first bytes (the fill is running), with the task giving the digest."""
    first_bytes = asyncio.Event()

    async def pull() -> str:
        hasher = hashlib.sha256()
        url = cache.url(f"/v2/up/team/oci-app/blobs/{layer.digest}")
        try:
            async with (
                httpx.AsyncClient(timeout=120) as client,
                client.stream("GET", url) as response,
            ):
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    hasher.update(chunk)
                    first_bytes.set()
        except httpx.HTTPError as exc:
            return f"failed: {exc!r}"
        finally:
            first_bytes.set()
        return "sha256:" + hasher.hexdigest()

    task = asyncio.create_task(pull())
    await asyncio.wait_for(first_bytes.wait(), 60)
    return task


def peer_fill(
    cache: Cache, layer: Blob, session: aiohttp.ClientSession, tmp_path: Path
) -> PeerFill:
    spool_dir = tmp_path / "replica-b" / "tmp"
    spool_dir.mkdir(parents=True)
    fill = PeerFill(
        digest=Digest.parse(layer.digest),
        repository="up/team/oci-app",
        peer_url=cache.server.url,
        session=session,
        tokens=tokens_of(cache),
        driver=FilesystemDriver(spool_dir.parent),
        spool_dir=spool_dir,
        deadline=120,
    )
    fill.start()
    return fill


async def test_a_replica_streams_the_leaders_fill_before_it_completes(
    leader: Cache, layer: Blob, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    leader.proxy.throttle(layer.digest, max(1, int(layer.size / FILL_SECONDS)))
    client = await start_fill_through_client(leader, layer)

    fill = peer_fill(leader, layer, session, tmp_path)
    await fill.wait_started()
    assert fill.size == layer.size
    hasher = hashlib.sha256()
    before_commit: bool | None = None
    async for chunk in fill.read(0, None):
        if before_commit is None:
            before_commit = not leader.stored_blob(layer.digest).exists()
        hasher.update(chunk)

    assert "sha256:" + hasher.hexdigest() == layer.digest
    assert fill.state is FillState.VERIFIED
    assert before_commit, "the replica got its first bytes only after the leader's fill"
    assert await asyncio.wait_for(client, 60) == layer.digest
    assert leader.committed(layer.digest).read_bytes() == layer.read()
    assert leader.proxy.count("GET", path_contains=f"/blobs/{layer.digest}") == 1
    await fill.close()


async def test_a_failing_fill_on_the_leader_fails_the_replicas_stream_short(
    leader: Cache, layer: Blob, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    leader.proxy.corrupt(layer.digest)
    leader.proxy.throttle(layer.digest, max(1, int(layer.size / FILL_SECONDS)))
    client = await start_fill_through_client(leader, layer)

    fill = peer_fill(leader, layer, session, tmp_path)
    received = 0
    with pytest.raises(RegistryError, match=re.escape(leader.server.url)):
        async for chunk in fill.read(0, None):
            received += len(chunk)
    assert received < layer.size
    assert fill.state is FillState.FAILED
    assert (await asyncio.wait_for(client, 60)).startswith("failed")
    assert not leader.stored_blob(layer.digest).exists()
    assert list((tmp_path / "replica-b" / "tmp").iterdir()) == []


async def test_the_fills_endpoint_is_for_replicas_only(
    leader: Cache, layer: Blob, session: aiohttp.ClientSession
) -> None:
    content = layer.read()
    pulled = leader.get(f"/v2/up/team/oci-app/blobs/{layer.digest}")
    assert pulled.status_code == 200
    leader.committed(layer.digest)
    url = leader.url(f"{FILLS_PATH}{layer.digest}")
    other_key = PeerTokens(bytes(32)).authorization(layer.digest)
    other_digest = tokens_of(leader).authorization(str(Digest.of(b"something else")))

    for headers in ({}, {"Authorization": other_key}, {"Authorization": other_digest}):
        refused = httpx.get(url, headers=headers, timeout=30)
        assert refused.status_code == 401, headers
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert content[:64] not in refused.content

    signed = {"Authorization": tokens_of(leader).authorization(layer.digest)}
    whole = httpx.get(url, headers=signed, timeout=30)
    assert whole.status_code == 200
    assert whole.content == content
    assert whole.headers[SIZE_HEADER] == str(layer.size)
    assert whole.headers[STATE_HEADER] == "committed"

    tail = httpx.get(url, params={"offset": "1000"}, headers=signed, timeout=30)
    assert tail.status_code == 200
    assert tail.headers[OFFSET_HEADER] == "1000"
    assert tail.content == content[1000:]

    past = httpx.get(url, params={"offset": str(layer.size + 1)}, headers=signed, timeout=30)
    assert past.status_code == 416

    unknown = str(Digest.of(b"never pulled"))
    missing = httpx.get(
        leader.url(f"{FILLS_PATH}{unknown}"),
        headers={"Authorization": tokens_of(leader).authorization(unknown)},
        timeout=30,
    )
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
