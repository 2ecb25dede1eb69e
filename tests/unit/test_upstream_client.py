"""The registry client fetches manifests, blobs, tags and referrers, retries what may pass, and
turns every upstream failure into a pullthrough error that names the upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from pullthrough.errors import (
    BlobUnknown,
    Denied,
    ManifestUnknown,
    NameUnknown,
    TooManyRequests,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.oci.mediatypes import DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from pullthrough.upstream import UpstreamTooManyRequests
from tests.unit.fake_registry import (
    FakeCdn,
    FakeRegistry,
    digest_of,
    error_response,
    make_client,
    manifest_bytes,
)

REPO = "library/nginx"
LAYER = bytes(range(256)) * 4096  # 1 MiB
LAYER_DIGEST = digest_of(LAYER)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.add_manifest(REPO, "1.27", manifest_bytes("1.27"), OCI_MANIFEST)
    fake.blobs[LAYER_DIGEST] = LAYER
    fake.tags[REPO] = ["1.25", "1.26", "1.27", "latest", "stable"]
    async with fake.running():
        yield fake


@asynccontextmanager
async def raw_http(answer: bytes, *, then_wait: float = 0.0) -> AsyncIterator[str]:
    """A server that answers every request with `answer` verbatim, then hangs up."""
    handlers: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            await asyncio.sleep(then_wait)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        # Python 3.11's wait_closed() does not wait for connection handlers: end them here so
        # no socket outlives the test.
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- manifests ---------------------------------------------------------------------------------


async def test_manifest_by_digest_and_head(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    digest = registry.add_manifest(REPO, "multi", index, f"{DOCKER_MANIFEST_LIST}; charset=utf-8")
    client = make_client(session, registry.url)

    by_digest = await client.get_manifest(REPO, digest, DOCKER_MANIFEST_LIST)
    head = await client.head_manifest(REPO, "multi", DOCKER_MANIFEST_LIST)

    assert by_digest.content == index
    assert by_digest.digest == digest
    assert by_digest.media_type == DOCKER_MANIFEST_LIST  # parameters dropped
    assert (head.media_type, head.digest, head.size) == (DOCKER_MANIFEST_LIST, digest, len(index))
    assert registry.count("HEAD", "/manifests/multi") == 1


async def test_wrong_docker_content_digest_is_upstream_invalid(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    from aiohttp import web

    lie = digest_of(b"something else")
    registry.failures.append(
        web.Response(
            body=manifest_bytes(),
            headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": lie},
        )
    )
    client = make_client(session, registry.url)

    with pytest.raises(UpstreamInvalid) as caught:
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert caught.value.status == 502
    assert f"upstream fake ({client.host}) sent manifest library/nginx:1.27" in str(caught.value)
    assert lie in str(caught.value)
    assert len(registry.requests) == 1  # wrong bytes are not retried


async def test_manifest_not_matching_the_requested_digest_is_upstream_invalid(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    from aiohttp import web

    wanted = digest_of(b"the manifest that was asked for")
    registry.failures.append(web.Response(body=manifest_bytes(), content_type=OCI_MANIFEST))
    client = make_client(session, registry.url)

    with pytest.raises(UpstreamInvalid, match="requested digest"):
        await client.get_manifest(REPO, wanted, OCI_MANIFEST)


async def test_oversized_manifest_is_upstream_invalid(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.add_manifest(REPO, "huge", b"{" + b" " * (4 * 1024 * 1024) + b"}", OCI_MANIFEST)
    client = make_client(session, registry.url)

    with pytest.raises(UpstreamInvalid, match="larger than 4194304 bytes"):
        await client.get_manifest(REPO, "huge", OCI_MANIFEST)


# -- status mapping ----------------------------------------------------------------------------


async def test_missing_manifest_blob_and_repository_map_to_their_codes(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)
    missing_blob = digest_of(b"nope")

    with pytest.raises(ManifestUnknown) as manifest:
        await client.get_manifest(REPO, "9.99", OCI_MANIFEST)
    with pytest.raises(ManifestUnknown):
        await client.head_manifest(REPO, "9.99", OCI_MANIFEST)
    with pytest.raises(BlobUnknown) as blob:
        await client.open_blob(REPO, missing_blob)
    with pytest.raises(BlobUnknown):
        await client.head_blob(REPO, missing_blob)
    registry.failures.append(error_response(404, "NAME_UNKNOWN"))
    with pytest.raises(NameUnknown) as name:
        await client.get_manifest("library/nosuch", "1", OCI_MANIFEST)

    upstream = f"upstream fake ({client.host})"
    assert manifest.value.message.startswith(f"{upstream} has no manifest library/nginx:9.99")
    assert blob.value.message.startswith(f"{upstream} has no blob library/nginx@{missing_blob}")
    assert name.value.message.startswith(f"{upstream} has no repository library/nosuch")
    assert len(registry.requests) == 5  # 4xx are never retried


async def test_forbidden_is_denied_and_other_4xx_is_unavailable_with_status(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)
    registry.failures.append(error_response(403, "DENIED"))
    registry.failures.append(error_response(400, "UNSUPPORTED"))

    with pytest.raises(Denied, match=r"upstream fake \(.*\) denied access to manifest"):
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)
    with pytest.raises(UpstreamUnavailable, match=r"upstream fake \(.*\) answered 400"):
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert len(registry.requests) == 2


# -- retries -----------------------------------------------------------------------------------


async def test_5xx_twice_then_success_is_retried(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.failures += [error_response(503), error_response(500)]
    client = make_client(session, registry.url, attempts=3)

    manifest = await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert manifest.content == manifest_bytes("1.27")
    assert registry.count("GET", "/manifests/1.27") == 3


async def test_5xx_forever_gives_up_after_the_configured_attempts(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.failures += [error_response(503) for _ in range(10)]
    client = make_client(session, registry.url, attempts=4)

    with pytest.raises(UpstreamUnavailable) as caught:
        await client.open_blob(REPO, LAYER_DIGEST)

    assert caught.value.status == 502
    assert caught.value.message.startswith(
        f"upstream fake ({client.host}) answered 503 for blob library/nginx@{LAYER_DIGEST}"
    )
    assert "gave up after 4 attempts" in caught.value.message
    assert len(registry.requests) == 4


async def test_429_is_not_retried_and_carries_retry_after(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.failures.append(error_response(429, "TOOMANYREQUESTS", {"Retry-After": "17"}))
    client = make_client(session, registry.url)

    with pytest.raises(TooManyRequests) as caught:
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert isinstance(caught.value, UpstreamTooManyRequests)
    assert caught.value.retry_after == 17.0
    assert caught.value.headers == {"Retry-After": "17"}
    assert "rate-limiting" in caught.value.message
    assert len(registry.requests) == 1


async def test_connection_refused_is_unavailable_naming_the_upstream(
    session: aiohttp.ClientSession,
) -> None:
    client = make_client(session, f"http://127.0.0.1:{closed_port()}", attempts=2)

    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert caught.value.message.startswith(
        f"upstream fake ({client.host}) connection failed fetching manifest library/nginx:1.27"
    )
    assert "gave up after 2 attempts" in caught.value.message


async def test_read_timeout_is_upstream_timeout_and_not_retried(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.stall = 0.5
    client = make_client(session, registry.url, read=0.1)

    with pytest.raises(UpstreamTimeout) as caught:
        await client.get_manifest(REPO, "1.27", OCI_MANIFEST)

    assert caught.value.status == 504
    assert caught.value.message == (
        f"upstream fake ({client.host}) timed out after 0.1s fetching manifest library/nginx:1.27"
    )
    assert len(registry.requests) == 1


# -- blobs -------------------------------------------------------------------------------------


async def test_blob_streams_whole_then_resumes_from_an_offset(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)

    async with await client.open_blob(REPO, LAYER_DIGEST) as whole:
        chunks = [chunk async for chunk in whole.iter_chunks()]
    async with await client.open_blob(REPO, LAYER_DIGEST, offset=1000) as rest:
        tail = b"".join([chunk async for chunk in rest.iter_chunks()])

    assert b"".join(chunks) == LAYER
    assert (whole.status, whole.offset, whole.total_size) == (200, 0, len(LAYER))
    assert (rest.status, rest.offset, rest.total_size) == (206, 1000, len(LAYER))
    assert tail == LAYER[1000:]
    assert registry.requests[-1].headers["Range"] == "bytes=1000-"
    assert "Range" not in registry.requests[-2].headers


async def test_connection_dropped_mid_blob_raises_unavailable_naming_upstream(
    session: aiohttp.ClientSession,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
    async with raw_http(head + b"x" * 40000) as url:
        client = make_client(session, url)
        async with await client.open_blob(REPO, LAYER_DIGEST) as blob:
            received = 0
            with pytest.raises(UpstreamUnavailable) as caught:
                async for chunk in blob.iter_chunks():
                    received += len(chunk)

    assert received == 40000
    assert blob.total_size == 100000
    assert caught.value.message.startswith(
        f"upstream fake ({client.host}) connection failed reading blob "
        f"library/nginx@{LAYER_DIGEST} (connection lost at byte 40000)"
    )


async def test_stalled_blob_body_raises_upstream_timeout(
    session: aiohttp.ClientSession,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    async with raw_http(head + b"x" * 10, then_wait=0.5) as url:
        client = make_client(session, url, read=0.1)
        async with await client.open_blob(REPO, LAYER_DIGEST) as blob:
            with pytest.raises(UpstreamTimeout, match=r"timed out after 0\.1s reading blob"):
                async for _ in blob.iter_chunks():
                    pass


async def test_head_blob_falls_back_to_a_range_get_when_the_cdn_refuses_head(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)
    assert await client.head_blob(REPO, LAYER_DIGEST) == len(LAYER)

    async with FakeCdn(registry.blobs, refuse_head=True).running() as cdn:
        registry.blob_redirect = cdn.url
        size = await client.head_blob(REPO, LAYER_DIGEST)

    assert size == len(LAYER)
    assert [(r.method, r.headers.get("Range")) for r in cdn.requests] == [
        ("HEAD", None),
        ("GET", "bytes=0-0"),
    ]


# -- tags, referrers, rate limits --------------------------------------------------------------


async def test_tags_are_paginated_by_link_header(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)

    first, more = await client.list_tags(REPO, 2, None)
    second, more_after_second = await client.list_tags(REPO, 2, first[-1])
    last, more_after_last = await client.list_tags(REPO, 2, second[-1])
    everything, more_after_all = await client.list_tags(REPO, None, None)

    assert (first, more) == (["1.25", "1.26"], True)
    assert (second, more_after_second) == (["1.27", "latest"], True)
    assert (last, more_after_last) == (["stable"], False)
    assert (len(everything), more_after_all) == (5, False)
    assert registry.requests[1].query == {"n": "2", "last": "1.26"}


async def test_tags_of_unknown_repository_is_name_unknown(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)

    with pytest.raises(NameUnknown, match="has no repository library/nosuch"):
        await client.list_tags("library/nosuch", None, None)


async def test_referrers_pass_through_and_none_without_the_api(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    subject = digest_of(manifest_bytes("1.27"))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    registry.referrers[subject] = index
    client = make_client(session, registry.url)

    found = await client.get_referrers(REPO, subject, "application/vnd.example.sbom")
    absent = await client.get_referrers(REPO, digest_of(b"other"), None)

    assert found == index
    assert absent is None
    assert registry.requests[0].query == {"artifactType": "application/vnd.example.sbom"}
    assert registry.requests[0].headers["Accept"] == OCI_INDEX


async def test_rate_limit_headers_are_recorded(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)
    assert client.rate_limit.remaining is None

    registry.extra_headers = {
        "ratelimit-limit": "100;w=21600",
        "ratelimit-remaining": "76;w=21600",
        "docker-ratelimit-source": "203.0.113.9",
    }
    await client.head_manifest(REPO, "1.27", OCI_MANIFEST)

    state = client.rate_limit
    assert (state.limit, state.remaining, state.window) == (100, 76, 21600)
    assert state.source == "203.0.113.9"
    assert state.seen_at is not None
