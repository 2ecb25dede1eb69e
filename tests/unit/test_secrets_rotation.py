"""Rules' credentials come from the store (the environment as fallback), are looked up as the
client authenticates, and a rotated secret is used, with no stale token, without a restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pullthrough.access.rule_credentials import StoredCredentials
from pullthrough.access.sealing import KEY_ENV, SecretKeySource
from pullthrough.access.secrets import SecretStore
from pullthrough.errors import Denied, NameUnknown, UpstreamUnavailable
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.mediatypes import OCI_MANIFEST, UPSTREAM_ACCEPT
from pullthrough.upstream import Credential, RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.credentials import EnvCredentialSource
from tests.unit.fake_registry import PASSWORD, USERNAME, FakeRegistry, manifest_bytes

SECRET = "pullthrough/fake"
RIGHT = Credential(USERNAME, PASSWORD)
WRONG = Credential(USERNAME, "not-the-" + PASSWORD)
ENV = {
    "PULLTHROUGH_SECRET_PULLTHROUGH_FAKE_USERNAME": "env-user",
    "PULLTHROUGH_SECRET_PULLTHROUGH_FAKE_PASSWORD": "env-password",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    metadata = await MetadataStore.open(f"sqlite+aiosqlite:///{tmp_path / 'metadata.sqlite'}")
    yield metadata
    await metadata.close()


@pytest.fixture
def store(metadata: MetadataStore, tmp_path: Path) -> SecretStore:
    return SecretStore(metadata, SecretKeySource(tmp_path, {}))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.add_manifest("team/private", "v1", manifest_bytes("private"), OCI_MANIFEST)
    fake.private.add("team/private")
    async with fake.running():
        yield fake


def client_for(
    session: aiohttp.ClientSession, url: str, credentials: StoredCredentials
) -> RegistryClient:
    return RegistryClient(
        session,
        url,
        name="fake",
        credentials=credentials.secret(SECRET),
        timeouts=UpstreamTimeouts(connect=2.0, read=5.0, total_manifest=10.0),
        retry=RetryPolicy(attempts=1, backoff=0.001),
    )


async def test_the_store_wins_over_the_environment_which_is_the_fallback(
    store: SecretStore,
) -> None:
    credentials = StoredCredentials(store, EnvCredentialSource(ENV), ttl=0)

    assert await credentials.lookup(SECRET) == Credential("env-user", "env-password")
    await store.put(SECRET, RIGHT)
    assert await credentials.lookup(SECRET) == RIGHT
    await store.delete(SECRET)
    assert await credentials.lookup(SECRET) == Credential("env-user", "env-password")
    assert await StoredCredentials(store, EnvCredentialSource({}), ttl=0).lookup(SECRET) is None


async def test_a_lookup_is_remembered_for_the_ttl_then_asked_again(store: SecretStore) -> None:
    clock = FakeClock()
    credentials = StoredCredentials(store, EnvCredentialSource({}), ttl=2.0, clock=clock)
    await store.put(SECRET, WRONG)
    assert await credentials.lookup(SECRET) == WRONG

    await store.put(SECRET, RIGHT)
    clock.now += 1.9
    assert await credentials.lookup(SECRET) == WRONG
    clock.now += 0.2
    assert await credentials.lookup(SECRET) == RIGHT


async def test_an_unreadable_secret_fails_the_pull_and_names_it_without_the_reason(
    tmp_path: Path,
    metadata: MetadataStore,
    store: SecretStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store.put(SECRET, RIGHT)
    # The same database, with another key.
    other = SecretStore(metadata, SecretKeySource(tmp_path / "other", {KEY_ENV: "A" * 43 + "="}))
    credentials = StoredCredentials(other, EnvCredentialSource(ENV), ttl=60)

    with caplog.at_level(logging.ERROR), pytest.raises(UpstreamUnavailable) as caught:
        await credentials.lookup(SECRET)
    with pytest.raises(UpstreamUnavailable):
        await credentials.lookup(SECRET)  # remembered: one log line per ttl, not per request

    assert SECRET in caught.value.message
    assert "another key" not in caught.value.message  # operators' business, in the log
    [logged] = [r for r in caplog.records if r.name == "pullthrough.access.rule_credentials"]
    assert "stored under another key" in logged.getMessage()


async def test_basic_auth_uses_a_rotated_password_without_a_new_client(
    session: aiohttp.ClientSession, registry: FakeRegistry, store: SecretStore
) -> None:
    registry.auth = "basic"
    credentials = StoredCredentials(store, EnvCredentialSource({}), ttl=0)
    client = client_for(session, registry.url, credentials)
    await store.put(SECRET, WRONG)

    with pytest.raises(NameUnknown) as caught:
        await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)
    assert f"user {USERNAME!r}" in caught.value.message
    assert WRONG.password not in caught.value.message

    await store.put(SECRET, RIGHT)
    manifest = await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    assert manifest.content == manifest_bytes("private")


async def test_token_auth_fetches_a_new_token_after_a_rotation(
    session: aiohttp.ClientSession, registry: FakeRegistry, store: SecretStore
) -> None:
    registry.auth = "bearer"
    credentials = StoredCredentials(store, EnvCredentialSource({}), ttl=0)
    client = client_for(session, registry.url, credentials)
    await store.put(SECRET, WRONG)
    with pytest.raises(Denied, match="refused the rule credential"):
        await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    await store.put(SECRET, RIGHT)
    await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)
    await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)
    fetched = len(registry.token_requests)

    # Storing the same value again keeps the account, so the cached token is still used...
    await store.put(SECRET, Credential(USERNAME, PASSWORD))
    await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)
    assert len(registry.token_requests) == fetched
    # ...but another password for the same username never reuses a token fetched with the old.
    await store.put(SECRET, WRONG)
    with pytest.raises(Denied):
        await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)
    assert len(registry.token_requests) == fetched + 1


@pytest.mark.parametrize(("realm_host", "sent"), [("127.0.0.1", True), ("localhost", False)])
async def test_the_credential_reaches_a_plain_http_token_service_only_on_the_upstream_host(
    session: aiohttp.ClientSession, realm_host: str, sent: bool
) -> None:
    """A self-hosted token service on another port of the registry's host gets the credential;
    one on another host over plain http does not (it is asked anonymously)."""
    seen: list[str | None] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"token": "t", "expires_in": 300})

    token_app = web.Application()
    token_app.router.add_get("/token", token)
    async with TestServer(token_app, host="127.0.0.1") as token_server:
        realm = f"http://{realm_host}:{token_server.port}/token"

        async def manifest(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != "Bearer t":
                challenge = f'Bearer realm="{realm}",service="s"'
                return web.Response(status=401, headers={"WWW-Authenticate": challenge})
            body = manifest_bytes("private")
            return web.Response(body=body, headers={"Content-Type": OCI_MANIFEST})

        registry_app = web.Application()
        registry_app.router.add_get("/v2/{repo:.+}/manifests/{ref}", manifest)
        async with TestServer(registry_app, host="127.0.0.1") as registry_server:
            client = RegistryClient(
                session, str(registry_server.make_url("")), name="fake", credential=RIGHT
            )
            await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    assert len(seen) == 1
    assert (seen[0] is not None and seen[0].startswith("Basic ")) is sent


async def test_a_missing_secret_fails_the_pull_naming_it_instead_of_going_anonymous(
    session: aiohttp.ClientSession, registry: FakeRegistry, store: SecretStore
) -> None:
    credentials = StoredCredentials(store, EnvCredentialSource({}), ttl=0)
    client = client_for(session, registry.url, credentials)

    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_manifest("team/private", "v1", UPSTREAM_ACCEPT)

    message = caught.value.message
    assert f"secret {SECRET!r}" in message
    assert f"`pullthrough secrets put {SECRET}`" in message
    assert "PULLTHROUGH_SECRET_PULLTHROUGH_FAKE_USERNAME" in message
    assert "the rule has no credential" not in message
    assert registry.requests == []  # nothing was sent upstream without the credential
