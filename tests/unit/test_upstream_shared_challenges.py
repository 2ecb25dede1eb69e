"""Worker processes share how an upstream authenticates: a worker whose first request to a
token-auth upstream is a blob GET, after another worker fetched the manifest, sends a token up
front instead of collecting a 401 first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from pullthrough.cache.upstreams import SharedUpstreamState
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.mediatypes import OCI_MANIFEST, UPSTREAM_ACCEPT
from pullthrough.upstream import Credential, RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.auth import ChallengeStore
from pullthrough.upstream.challenge import Challenge
from tests.unit.fake_registry import PASSWORD, USERNAME, FakeRegistry, digest_of, manifest_bytes
from tests.unit.space_support import metadata  # noqa: F401 - the fixture, on each backend

LAYER = b"layer bytes" * 100
CREDENTIAL = Credential(USERNAME, PASSWORD)


class MemoryChallenges:
    """A ChallengeStore that lives as long as the test: what the metadata database is to the
    worker processes."""

    def __init__(self) -> None:
        self.known: dict[str, Challenge] = {}
        self.writes = 0

    async def recall(self, origin: str) -> Challenge | None:
        return self.known.get(origin)

    async def remember(self, origin: str, challenge: Challenge) -> None:
        self.writes += 1
        self.known[origin] = challenge


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.add_manifest("library/nginx", "1.27", manifest_bytes("1.27"), OCI_MANIFEST)
    fake.blobs[digest_of(LAYER)] = LAYER
    async with fake.running():
        yield fake


def worker(
    session: aiohttp.ClientSession,
    url: str,
    challenges: ChallengeStore,
    credential: Credential | None = None,
) -> RegistryClient:
    """One worker process's client: its own token cache (the default), the shared store."""
    return RegistryClient(
        session,
        url,
        name="fake",
        credential=credential,
        timeouts=UpstreamTimeouts(connect=2.0, read=5.0, total_manifest=10.0),
        retry=RetryPolicy(attempts=1),
        challenges=challenges,
    )


async def read_blob(client: RegistryClient, repo: str, digest: str) -> bytes:
    async with await client.open_blob(repo, digest) as blob:
        return b"".join([chunk async for chunk in blob.iter_chunks()])


async def test_a_second_worker_sends_its_first_blob_get_with_a_token(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    shared = MemoryChallenges()
    first, second = worker(session, registry.url, shared), worker(session, registry.url, shared)

    await first.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    assert await read_blob(second, "library/nginx", digest_of(LAYER)) == LAYER
    assert await read_blob(second, "library/nginx", digest_of(LAYER)) == LAYER

    # The manifest's 401 taught both workers: every blob GET went out with a token.
    blob_gets = [r for r in registry.requests if "/blobs/" in r.path]
    assert len(blob_gets) == 2
    assert all(r.headers.get("Authorization", "").startswith("Bearer ") for r in blob_gets)
    assert registry.count("GET", "/manifests/") == 2  # the manifest's 401, then its GET
    assert shared.writes == 1
    assert list(shared.known.values()) == [
        Challenge("bearer", {"realm": f"{registry.url}/token", "service": "fake-registry"})
    ]


async def test_a_second_worker_sends_basic_up_front(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "basic"
    shared = MemoryChallenges()
    first = worker(session, registry.url, shared, CREDENTIAL)
    second = worker(session, registry.url, shared, CREDENTIAL)

    await first.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    await read_blob(second, "library/nginx", digest_of(LAYER))

    [blob_get] = [r for r in registry.requests if "/blobs/" in r.path]
    assert blob_get.headers["Authorization"].startswith("Basic ")
    assert len(registry.requests) == 3


async def test_an_out_of_date_realm_costs_one_401_and_is_replaced(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    registry.auth = "bearer"
    shared = MemoryChallenges()
    origin = registry.url
    # A realm nothing answers at: the upstream moved its token service since it was seen.
    shared.known[origin] = Challenge("bearer", {"realm": "http://127.0.0.1:9/token"})
    client = worker(session, registry.url, shared)

    assert await read_blob(client, "library/nginx", digest_of(LAYER)) == LAYER

    first_try, answered = registry.requests
    assert "Authorization" not in first_try.headers  # the remembered realm failed: ask upstream
    assert answered.headers["Authorization"].startswith("Bearer ")
    assert shared.known[origin].param("realm") == f"{registry.url}/token"


async def test_an_anonymous_upstream_asks_the_store_only_until_it_has_answered(
    session: aiohttp.ClientSession, registry: FakeRegistry
) -> None:
    class CountingChallenges(MemoryChallenges):
        reads = 0

        async def recall(self, origin: str) -> Challenge | None:
            self.reads += 1
            return await super().recall(origin)

    shared = CountingChallenges()
    client = worker(session, registry.url, shared)
    for _ in range(3):
        await client.get_manifest("library/nginx", "1.27", UPSTREAM_ACCEPT)
    assert shared.reads == 1
    assert shared.writes == 0


async def test_the_metadata_database_shares_challenges_between_workers(
    metadata: MetadataStore,  # noqa: F811 - the fixture imported above
) -> None:
    first, second = SharedUpstreamState(metadata), SharedUpstreamState(metadata)
    origin = "https://registry.example:5000"
    assert await second.recall(origin) is None

    bearer = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    await first.remember(origin, bearer)
    assert await second.recall(origin) == bearer
    await first.remember(origin, Challenge("basic"))
    assert await second.recall(origin) == Challenge("basic")
    assert await second.recall("https://other.example") is None
