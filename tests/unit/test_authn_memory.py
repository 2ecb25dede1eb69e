"""What the authenticator remembers never outlives what the server revoked: a login token is
refused from its `exp` on, a deleted principal or a changed password is refused once the ACCESS
revision has moved (at most REVISION_POLL_SECONDS later), and a registry token is refused with
its principal. One clock drives the tokens, the memory and the revision reads."""

from __future__ import annotations

import base64
import json

import pytest

from pullthrough.access import hashing
from pullthrough.access.authn import Authenticator
from pullthrough.access.authz import Authorizer
from pullthrough.access.hashing import hash_api_key, hash_password
from pullthrough.access.registry_policy.document import PULL, Principal
from pullthrough.access.tokens import TokenSigner
from pullthrough.errors import Unauthorized
from pullthrough.metadata.principals import AccessStore, PrincipalRow
from pullthrough.metadata.revisions import REVISION_POLL_SECONDS, Revisions
from pullthrough.metadata.store import MetadataStore
from tests.unit.space_support import metadata

__all__ = ["metadata"]

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.25

    def __call__(self) -> float:
        return self.now


class CountingStore(AccessStore):
    """Counts the principal lookups, to show what the hot path costs."""

    lookups = 0

    async def principal(self, name: str) -> PrincipalRow | None:
        self.lookups += 1
        return await super().principal(name)


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "_BCRYPT_ROUNDS", 4)


def parts(
    metadata: MetadataStore,
) -> tuple[Clock, CountingStore, TokenSigner, Authenticator]:
    clock = Clock()
    store = CountingStore(metadata.engine)
    signer = TokenSigner(KEY, service="pullthrough", clock=clock)
    revisions = Revisions(metadata.engine, clock=clock)
    return clock, store, signer, Authenticator(store, signer, revisions, clock=clock)


async def refused(authenticator: Authenticator, header: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await authenticator.authenticate(header)
    return caught.value.message


async def test_a_login_token_is_refused_from_its_exp_on(metadata: MetadataStore) -> None:
    """Old behaviour: accepted for a minute past exp, from the memory of verified Basic."""
    clock, store, signer, authenticator = parts(metadata)
    await store.put_principal("alice", "user", hash_password("pw-1"), "acme", ())
    row = await store.principal("alice")
    assert row is not None
    alice = Principal("alice", "user", "acme")
    login = signer.issue(alice, 3, stamp=signer.stamp(row.secret_hash), purpose="login")
    expires_at = json.loads(_payload(login))["exp"]
    assert expires_at == int(clock.now) + 3

    for username in ("token", "AWS", "anything"):
        caller = await authenticator.authenticate(basic_header(username, login))
        assert caller is not None and caller.principal.name == "alice"
        assert caller.proof == "login token" and caller.expires_at == expires_at
    clock.now = expires_at - 0.001  # remembered, and still valid
    assert await authenticator.authenticate(basic_header("token", login)) is not None
    clock.now = expires_at
    assert "expired" in await refused(authenticator, basic_header("token", login))
    assert "expired" in await refused(authenticator, basic_header("AWS", login))


async def test_a_registry_token_is_refused_from_its_exp_on(metadata: MetadataStore) -> None:
    clock, store, signer, authenticator = parts(metadata)
    await store.put_principal("ci", "apikey", hash_api_key("ptk_x"), None, ())
    row = await store.principal("ci")
    assert row is not None
    token = signer.issue(Principal("ci", "apikey"), 2, stamp=signer.stamp(row.secret_hash))
    exp = int(clock.now) + 2
    clock.now = exp - 0.001
    assert await authenticator.authenticate(f"Bearer {token}") is not None
    clock.now = exp
    assert "expired" in await refused(authenticator, f"Bearer {token}")


async def test_a_deleted_user_is_refused_once_the_revision_moved(
    metadata: MetadataStore,
) -> None:
    """Old behaviour: the remembered password and every registry token kept working."""
    clock, store, signer, authenticator = parts(metadata)
    await store.put_principal("alice", "user", hash_password("pw-1"), None, ())
    password = basic_header("alice", "pw-1")
    caller = await authenticator.authenticate(password)
    assert caller is not None and caller.stamp is not None
    token = f"Bearer {signer.issue(caller.principal, 300, stamp=caller.stamp)}"
    assert await authenticator.authenticate(token) is not None

    await store.delete_principal("alice")
    clock.now += REVISION_POLL_SECONDS
    assert "wrong username or password" in await refused(authenticator, password)
    assert "no longer exists" in await refused(authenticator, token)


async def test_a_changed_password_refuses_the_old_one_and_its_tokens(
    metadata: MetadataStore,
) -> None:
    clock, store, signer, authenticator = parts(metadata)
    await store.put_principal("alice", "user", hash_password("pw-1"), None, ())
    caller = await authenticator.authenticate(basic_header("alice", "pw-1"))
    assert caller is not None
    login = signer.issue(caller.principal, 3600, stamp=caller.stamp, purpose="login")
    registry = f"Bearer {signer.issue(caller.principal, 300, stamp=caller.stamp)}"
    assert await authenticator.authenticate(basic_header("token", login)) is not None

    await store.put_principal("alice", "user", hash_password("pw-2"), None, ())
    clock.now += REVISION_POLL_SECONDS
    assert "wrong username" in await refused(authenticator, basic_header("alice", "pw-1"))
    assert await authenticator.authenticate(basic_header("alice", "pw-2")) is not None
    assert "log in again" in await refused(authenticator, basic_header("token", login))
    assert "log in again" in await refused(authenticator, registry)


async def test_credentials_are_remembered_until_a_change_and_for_at_most_a_minute(
    metadata: MetadataStore,
) -> None:
    """The memory is what keeps bcrypt and the database off the hot path: no lookup per
    request while nothing changed; one after any change to access, and after a minute."""
    clock, store, signer, authenticator = parts(metadata)
    await store.put_principal("alice", "user", hash_password("pw-1"), None, ())
    password = basic_header("alice", "pw-1")
    caller = await authenticator.authenticate(password)
    assert caller is not None
    token = f"Bearer {signer.issue(caller.principal, 300, stamp=caller.stamp)}"
    await authenticator.authenticate(token)
    before = store.lookups
    for _ in range(130):  # 65 s
        clock.now += 0.5
        await authenticator.authenticate(password)
        await authenticator.authenticate(token)
    assert store.lookups == before + 1  # the password, once its minute was up

    await store.put_principal("bob", "user", hash_password("pw-b"), None, ())
    clock.now += REVISION_POLL_SECONDS
    await authenticator.authenticate(password)
    await authenticator.authenticate(token)
    assert store.lookups == before + 3  # any change to access: checked again, once each


async def test_the_policy_is_read_again_once_the_revision_moved(metadata: MetadataStore) -> None:
    """Old behaviour: polled `updated_at` once a second."""
    clock = Clock()
    store = AccessStore(metadata.engine)
    authorizer = Authorizer(store, Revisions(metadata.engine, clock=clock))
    alice = Principal("alice", "user")
    assert (await authorizer.decide(alice, PULL, "up/app")).allowed  # the default policy
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}],
    }
    await store.put_policy(json.dumps(deny))
    clock.now += REVISION_POLL_SECONDS
    assert not (await authorizer.decide(alice, PULL, "up/app")).allowed
    await store.delete_policy()
    clock.now += REVISION_POLL_SECONDS
    assert (await authorizer.decide(alice, PULL, "up/app")).allowed


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _payload(token: str) -> str:
    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
