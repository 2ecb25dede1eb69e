"""What the server revoked stops working on every worker: an expired login token from its `exp`
on, a deleted user and an old password as soon as the command that changed them returns. Each
scenario first has both workers of a two-worker server accept the credential (so each remembers
it), then revokes it and asks both again."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

WORKERS = 2
ATTEMPTS = 80  # fresh connections to send before both workers must have answered
PASSWORD = "alice-Secret-1"
NEW_PASSWORD = "alice-Secret-2"

Send = Callable[[dict[str, str]], httpx.Response]


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"workers": WORKERS, "auth": {"enabled": True}},
    )
    cache.server.command("users", "add", "alice", stdin=PASSWORD)
    return cache


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def on_every_worker(cache: Cache, send: Send) -> dict[int, list[int]]:
    """Send on fresh connections (the kernel spreads them over the workers) until the log shows
    that every worker answered; the statuses each worker (pid) answered with."""
    statuses: dict[str, int] = {}
    for _ in range(ATTEMPTS):
        request_id = uuid.uuid4().hex[:16]
        statuses[request_id] = send({"X-Request-Id": request_id}).status_code
        if len(set(cache.server.served_by(set(statuses)).values())) == WORKERS:
            break
    wait_for(
        lambda: len(cache.server.served_by(set(statuses))) == len(statuses), 10, "the log lines"
    )
    by_worker: dict[int, list[int]] = {}
    for request_id, pid in cache.server.served_by(set(statuses)).items():
        by_worker.setdefault(pid, []).append(statuses[request_id])
    assert len(by_worker) == WORKERS, f"only workers {sorted(by_worker)} answered"
    return by_worker


def assert_every_worker_answers(cache: Cache, status: int, send: Send) -> None:
    by_worker = on_every_worker(cache, send)
    assert all(set(answers) == {status} for answers in by_worker.values()), by_worker


def pulling(cache: Cache, manifest: str, credentials: dict[str, str]) -> Send:
    def send(headers: dict[str, str]) -> httpx.Response:
        return cache.get(manifest, headers={"Accept": UPSTREAM_ACCEPT, **credentials, **headers})

    return send


def registry_token(cache: Cache, credentials: dict[str, str], scope: str) -> str:
    response = cache.get("/token", params={"scope": scope}, headers=credentials)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_a_login_token_is_refused_on_every_worker_from_its_exp_on(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    """Old behaviour: still accepted up to ~60 s past its exp (remembered as Basic), and the
    registry token got with it lived its full 5 minutes."""
    image = fixture_images.busybox
    manifest = f"/v2/up/{image.repo}/manifests/{image.tag}"
    scope = f"repository:up/{image.repo}:pull"
    login = cache.server.command("login-password", "--principal", "alice", "--ttl", "8s").strip()
    payload = login.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    as_basic = basic("token", login)
    bearer = {"Authorization": f"Bearer {registry_token(cache, basic('AWS', login), scope)}"}

    def token_endpoint(headers: dict[str, str]) -> httpx.Response:
        return cache.get("/token", params={"scope": scope}, headers={**as_basic, **headers})

    def pull_with(credentials: dict[str, str]) -> Send:
        return pulling(cache, manifest, credentials)

    for send in (token_endpoint, pull_with(as_basic), pull_with(bearer)):
        assert_every_worker_answers(cache, 200, send)
    assert time.time() < exp, "the login token expired before both workers had seen it"

    deadline = time.monotonic() + 30
    while time.time() < exp and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.time() >= exp
    for send in (token_endpoint, pull_with(as_basic), pull_with(bearer)):
        assert_every_worker_answers(cache, 401, send)
    refused = pull_with(as_basic)({})
    assert "expired" in refused.json()["errors"][0]["message"]


def test_a_deleted_user_is_refused_on_every_worker_when_the_command_returns(
    cache: Cache, fixture_images: FixtureImages
) -> None:
    """Old behaviour: the password kept pulling for up to a minute, the registry token for
    its whole lifetime."""
    image = fixture_images.busybox
    manifest = f"/v2/up/{image.repo}/manifests/{image.tag}"
    password = basic("alice", PASSWORD)
    bearer = {
        "Authorization": "Bearer "
        + registry_token(cache, password, f"repository:up/{image.repo}:pull")
    }

    def pull_with(credentials: dict[str, str]) -> Send:
        return pulling(cache, manifest, credentials)

    for credentials in (password, bearer):
        assert_every_worker_answers(cache, 200, pull_with(credentials))

    assert cache.server.command("users", "delete", "alice").strip() == "alice deleted"
    for credentials in (password, bearer):
        assert_every_worker_answers(cache, 401, pull_with(credentials))
    gone = pull_with(bearer)({}).json()["errors"][0]["message"]
    assert "'alice' no longer exists" in gone


def test_a_changed_password_refuses_the_old_one_on_every_worker_when_the_command_returns(
    cache: Cache,
) -> None:
    """Old behaviour: the old password kept working for up to a minute."""

    def base(credentials: dict[str, str]) -> Send:
        return lambda headers: cache.get("/v2/", headers={**credentials, **headers})

    assert_every_worker_answers(cache, 200, base(basic("alice", PASSWORD)))
    cache.server.command("users", "add", "alice", stdin=NEW_PASSWORD)
    assert_every_worker_answers(cache, 401, base(basic("alice", PASSWORD)))
    assert_every_worker_answers(cache, 200, base(basic("alice", NEW_PASSWORD)))
