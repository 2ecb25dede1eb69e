"""The registry client authenticates as upstreams ask: anonymous, Basic, Bearer tokens; and it
never hands `Authorization` to a host a redirect points at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from pullthrough.errors import Denied, NameUnknown, UpstreamInvalid
from pullthrough.oci.mediatypes import OCI_MANIFEST, UPSTREAM_ACCEPT
from pullthrough.upstream import Credential, TokenCache
from tests.unit.fake_registry import (
    PASSWORD,
    USERNAME,
    FakeCdn,
    FakeRegistry,
    digest_of,
    make_client,
    manifest_bytes,
)

CREDENTIAL = Credential(USERNAME, PASSWORD)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.add_manifest("library/nginx", "1.27", manifest_bytes("1.27"), OCI_MANIFEST)
    fake.add_manifest("team/private", "v1", manifest_bytes("private"), OCI_MANIFEST)
    fake.private.add("team/private")
    async with fake.running():
        yield fake


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_anonymous_pull_sends_no_authorization_and_names_itself(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    client = make_client(session, registry.url)

    manifest = await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("1.27")
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.digest == digest_of(manifest_bytes("1.27"))
    [seen] = registry.requests
    assert "Authorization" not in seen.headers
    assert seen.headers["User-Agent"].startswith("pullthrough/")
    assert seen.headers["Accept"] == UPSTREAM_ACCEPT
    assert client.host == registry.url.removeprefix("http://")


async def test_basic_challenge_is_answered_then_basic_is_sent_up_front(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "basic"
    client = make_client(session, registry.url, credential=CREDENTIAL)

    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    # 401, retry with Basic, then the second pull authenticates without a 401 round trip.
    assert len(registry.requests) == 3
    assert "Authorization" not in registry.requests[0].headers
    assert registry.requests[1].headers["Authorization"].startswith("Basic ")
    assert registry.requests[2].headers["Authorization"].startswith("Basic ")


async def test_basic_challenge_without_credential_is_name_unknown_saying_so(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "basic"
    client = make_client(session, registry.url)

    with pytest.raises(NameUnknown) as caught:
        await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert caught.value.status == 404
    assert caught.value.message == (
        f"upstream fake ({client.host}) answered 401 for repository library/nginx: it does not "
        "exist there, or needs a credential (the rule has no credential)"
    )
    assert len(registry.requests) == 1


async def test_bearer_token_is_fetched_with_service_scope_and_credential_then_reused(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    client = make_client(session, registry.url, credential=CREDENTIAL)

    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    await client.head_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    [token_request] = registry.token_requests
    assert token_request.query == {
        "service": "fake-registry",
        "scope": "repository:library/nginx:pull",
    }
    assert token_request.headers["Authorization"].startswith("Basic ")
    # One 401 on the first request only; the cached token goes out up front afterwards.
    assert len(registry.requests) == 4
    assert [r.headers.get("Authorization") for r in registry.requests[1:]] == ["Bearer token-1"] * 3


async def test_bearer_token_is_fetched_anonymously_without_credential(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    registry.token_field = "access_token"  # the OAuth2 spelling some token services use
    registry.token_lifetime = None
    client = make_client(session, registry.url)

    manifest = await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("1.27")
    [token_request] = registry.token_requests
    assert "Authorization" not in token_request.headers


async def test_concurrent_requests_fetch_one_token(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    registry.token_delay = 0.05  # keep the fetch in flight while the others arrive
    client = make_client(session, registry.url)

    results = await asyncio.gather(
        *(client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT) for _ in range(10))
    )

    assert {r.digest for r in results} == {digest_of(manifest_bytes("1.27"))}
    assert len(registry.token_requests) == 1


async def test_token_is_reused_until_expiry_then_fetched_again(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    registry.token_lifetime = 60
    clock = FakeClock()
    client = make_client(session, registry.url, tokens=TokenCache(clock=clock))

    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    clock.now += 50  # inside the lifetime minus the renewal margin
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    assert len(registry.token_requests) == 1

    clock.now += 10  # past expiry minus the margin: renew before sending
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert len(registry.token_requests) == 2
    assert registry.requests[-1].headers["Authorization"] == "Bearer token-2"
    assert len(registry.requests) == 4  # only the very first request met a 401


async def test_refused_cached_token_is_dropped_and_the_request_retried_once(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    client = make_client(session, registry.url)
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    registry.revoke_tokens()

    manifest = await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("1.27")
    assert len(registry.token_requests) == 2
    assert [r.headers.get("Authorization") for r in registry.requests[2:]] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_private_repository_without_credential_is_name_unknown_after_one_retry(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    client = make_client(session, registry.url)

    with pytest.raises(NameUnknown) as caught:
        await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    assert "answered 401 for repository team/private" in caught.value.message
    assert "needs a credential" in caught.value.message
    assert len(registry.requests) == 2
    assert len(registry.token_requests) == 1


async def test_private_repository_with_credential_is_pulled(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    client = make_client(session, registry.url, credential=CREDENTIAL)

    manifest = await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("private")


async def test_tokens_are_not_shared_between_accounts(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    tokens = TokenCache()
    with_credential = make_client(session, registry.url, credential=CREDENTIAL, tokens=tokens)
    anonymous = make_client(session, registry.url, tokens=tokens)
    await with_credential.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    with pytest.raises(NameUnknown):
        await anonymous.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    assert len(registry.token_requests) == 2


async def test_wrong_credential_at_token_service_is_denied_naming_the_user(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    client = make_client(session, registry.url, credential=Credential(USERNAME, "wrong"))

    with pytest.raises(Denied) as caught:
        await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert "refused the rule credential (user 'robot')" in caught.value.message
    assert "wrong" not in caught.value.message


async def test_blob_redirect_to_another_host_carries_no_authorization(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    layer = b"layer bytes" * 1000
    registry.blobs[digest_of(layer)] = layer
    async with FakeCdn(registry.blobs).running() as cdn:
        registry.blob_redirect = cdn.url
        client = make_client(session, registry.url)

        async with await client.open_blob("library/nginx", digest_of(layer)) as blob:
            body = b"".join([chunk async for chunk in blob.iter_chunks()])

    assert body == layer
    assert registry.requests[-1].headers["Authorization"] == "Bearer token-1"
    [at_cdn] = cdn.requests
    assert "Authorization" not in at_cdn.headers
    assert at_cdn.query == {"sig": "abc+def"}  # the presigned URL arrives intact


async def test_relative_redirect_on_the_upstream_keeps_authorization(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "basic"
    registry.add_manifest("library/nginx", "moved", manifest_bytes("moved"), OCI_MANIFEST)
    client = make_client(session, registry.url, credential=CREDENTIAL)
    await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)  # learns Basic
    registry.failures.append(
        web.Response(status=307, headers={"Location": "/v2/library/nginx/manifests/moved"})
    )

    manifest = await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("moved")
    assert registry.requests[-1].path == "/v2/library/nginx/manifests/moved"
    assert registry.requests[-1].headers["Authorization"].startswith("Basic ")


async def test_redirect_loop_stops_after_five(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    for _ in range(10):
        registry.failures.append(
            web.Response(status=302, headers={"Location": "/v2/library/nginx/manifests/1.27"})
        )
    client = make_client(session, registry.url)

    with pytest.raises(UpstreamInvalid, match="redirected more than 5 times"):
        await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)

    assert len(registry.requests) == 6
