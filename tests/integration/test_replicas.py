"""Three replicas on one PostgreSQL database, behind nginx: what one replica is told reaches the
others. A rule made through one replica's admin API routes pulls on every replica within 2 s
(and its deletion likewise); an API key or a user deleted through one replica's machine is
refused by every replica, its password and its registry tokens alike, once the command returns;
a registry policy put there likewise; an upstream secret rotated through one replica is used
by every replica within 2 s.
Each scenario asks every replica directly, not through the load balancer, so none is skipped."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy
from tests.integration.cache_setup import SECRET
from tests.integration.conftest import StartReplicas
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.replicas import Replicas
from tests.rig.server import PullthroughServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# Each worker of each replica re-reads the rules at most once a second.
RULE_DEADLINE = 2.0
PASSWORD = "alice-Secret-1"


def manifest(base_url: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(
        f"{base_url}{path}", headers={"Accept": UPSTREAM_ACCEPT, **(headers or {})}, timeout=60
    )


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def statuses_by_replica(
    replicas: Replicas, path: str, headers: dict[str, str] | None = None
) -> dict[str, int]:
    """The status each replica, asked directly, answers `path` with."""
    return {s.host: manifest(s.url, path, headers).status_code for s in replicas.servers}


def until_every_replica_answers(
    replicas: Replicas, path: str, status: int, deadline: float
) -> dict[str, int]:
    """Ask every replica directly until each answered `status` or `deadline` (monotonic) passed;
    what each answered last."""
    answers: dict[str, int] = {}
    for server in replicas.servers:
        while True:
            answers[server.host] = manifest(server.url, path).status_code
            if answers[server.host] == status or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    return answers


def up_rule(upstream_url: str, **rule: Any) -> dict[str, Any]:
    return {"prefix": "up", "upstream": upstream_url, "default": True, **rule}


def test_a_rule_made_on_one_replica_routes_on_every_replica_within_2_s(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    replicas = start_replicas([up_rule(proxy.url)])
    first, second, _ = replicas.servers
    image = fixture_images.busybox
    path = f"/v2/fresh/{image.repo}/manifests/{image.tag}"
    assert set(statuses_by_replica(replicas, path).values()) == {404}  # no rule `fresh` yet

    started = time.monotonic()
    created = httpx.post(
        f"{first.url}/api/v1/rules", json={"prefix": "fresh", "upstream": proxy.url}, timeout=60
    )
    assert created.status_code == 201, created.text
    answers = until_every_replica_answers(replicas, path, 200, started + RULE_DEADLINE)
    assert set(answers.values()) == {200}, answers

    started = time.monotonic()
    deleted = httpx.delete(f"{second.url}/api/v1/rules/fresh", timeout=60)
    assert deleted.status_code == 204, deleted.text
    answers = until_every_replica_answers(replicas, path, 404, started + RULE_DEADLINE)
    assert set(answers.values()) == {404}, answers
    # Through the load balancer too: whichever replica answers, the rule is gone.
    assert {manifest(replicas.url, path).status_code for _ in range(6)} == {404}


def registry_token(base_url: str, credentials: dict[str, str], scope: str) -> dict[str, str]:
    response = httpx.get(
        f"{base_url}/token", params={"scope": scope}, headers=credentials, timeout=60
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def assert_every_replica(
    replicas: Replicas, path: str, credentials: dict[str, str], status: int
) -> None:
    answers = statuses_by_replica(replicas, path, credentials)
    assert set(answers.values()) == {status}, answers


def test_a_deleted_api_key_or_user_is_refused_by_every_replica_when_the_command_returns(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    replicas = start_replicas([up_rule(proxy.url)], settings={"auth": {"enabled": True}})
    first, second, third = replicas.servers
    image = fixture_images.busybox
    path = f"/v2/up/{image.repo}/manifests/{image.tag}"
    scope = f"repository:up/{image.repo}:pull"

    key = replicas.command(first, "apikeys", "create", "ci").strip()
    replicas.command(second, "users", "add", "alice", stdin=PASSWORD)
    principals: dict[str, dict[str, str]] = {"ci": basic("ci", key)}
    principals["alice"] = basic("alice", PASSWORD)
    tokens = {
        # From the load balancer: one replica signs it, the others must accept it.
        name: registry_token(replicas.url, credentials, scope)
        for name, credentials in principals.items()
    }
    for name in ("ci", "alice"):
        for credentials in (principals[name], tokens[name]):
            # Every replica accepts (and so remembers) the credential before it is revoked.
            assert_every_replica(replicas, path, credentials, 200)

    assert replicas.command(third, "apikeys", "delete", "ci").strip()
    for credentials in (principals["ci"], tokens["ci"]):
        assert_every_replica(replicas, path, credentials, 401)
    for credentials in (principals["alice"], tokens["alice"]):
        assert_every_replica(replicas, path, credentials, 200)

    assert replicas.command(first, "users", "delete", "alice").strip() == "alice deleted"
    for credentials in (principals["alice"], tokens["alice"]):
        assert_every_replica(replicas, path, credentials, 401)
    gone = manifest(third.url, path, tokens["alice"]).json()["errors"][0]["message"]
    assert "'alice' no longer exists" in gone


def test_a_policy_put_on_one_replica_is_enforced_by_every_replica_when_the_command_returns(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    replicas = start_replicas([up_rule(proxy.url)], settings={"auth": {"enabled": True}})
    first, second, third = replicas.servers
    image = fixture_images.busybox
    path = f"/v2/up/{image.repo}/manifests/{image.tag}"
    key = replicas.command(first, "apikeys", "create", "ci", "--group", "ci").strip()
    ci = basic("ci", key)
    assert_every_replica(replicas, path, ci, 200)

    def policy(name: str, *statements: dict[str, Any]) -> str:
        document = tmp_path / f"{name}.json"
        document.write_text(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))
        return str(document)

    allow = {"Effect": "Allow", "Action": "registry:*", "Resource": "*"}
    deny_ci = {
        "Effect": "Deny",
        "Principal": {"Group": ["ci"]},
        "Action": "registry:*",
        "Resource": "repository/up/*",
    }
    replicas.command(second, "policy", "put", "-f", policy("deny-ci", allow, deny_ci))
    assert_every_replica(replicas, path, ci, 403)

    replicas.command(third, "policy", "put", "-f", policy("allow", allow))
    assert_every_replica(replicas, path, ci, 200)


def test_a_secret_rotated_on_one_replica_is_used_by_every_replica_within_2_s(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    username, password = upstream.credentials
    proxy = counting_proxy(upstream.url)
    # Every manifest GET asks upstream (tag_ttl 0), with the credential the replica has now.
    rule = up_rule(proxy.url, credential=SECRET, tag_ttl=0, negative_ttl=0)
    replicas = start_replicas([rule])
    first, second, _ = replicas.servers
    image = fixture_images.busybox
    path = f"/v2/up/{image.repo}/manifests/{image.tag}"

    def put_secret(server: PullthroughServer, value: dict[str, str]) -> None:
        stored = httpx.put(f"{server.url}/api/v1/secrets/{SECRET}", json=value, timeout=60)
        assert stored.status_code in (200, 201), stored.text

    # Sealed by one replica, opened by the others: they share PULLTHROUGH_SECRET_KEY.
    put_secret(first, {"username": username, "accessToken": "not-the-password"})
    started = time.monotonic()
    answers = until_every_replica_answers(replicas, path, 404, started + RULE_DEADLINE)
    assert set(answers.values()) == {404}, answers

    started = time.monotonic()
    put_secret(second, {"username": username, "accessToken": password})
    answers = until_every_replica_answers(replicas, path, 200, started + RULE_DEADLINE)
    assert set(answers.values()) == {200}, answers


def test_a_tag_is_fetched_and_revalidated_once_across_the_replicas(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
) -> None:
    """Thirty clients spread over three replicas ask for a cold tag at once: one upstream GET of
    the manifest. Once its TTL has passed, thirty more: one upstream HEAD revalidates it for
    every replica (the tag's lock is a lease every replica sees)."""
    proxy = counting_proxy(upstreams["anonymous"].url)
    replicas = start_replicas([up_rule(proxy.url, tag_ttl="2s")])
    image = fixture_images.many_layers
    path = f"/v2/up/{image.repo}/manifests/{image.tag}"
    # Held upstream long enough for every replica's clients to be waiting on the one request.
    proxy.delay("/manifests/", 0.5, times=1)

    def ask_all() -> list[httpx.Response]:
        urls = [server.url for server in replicas.servers] * 10
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            return list(pool.map(lambda url: manifest(url, path), urls))

    cold = ask_all()
    assert {a.status_code for a in cold} == {200}
    assert {a.content for a in cold} == {image.manifest}
    assert proxy.count("GET", path_contains=f"/manifests/{image.tag}") == 1
    assert proxy.count("HEAD", path_contains=f"/manifests/{image.tag}") == 0

    proxy.reset()
    time.sleep(2.5)  # past the tag's TTL on every replica
    proxy.delay("/manifests/", 0.5, times=1)
    again = ask_all()
    assert {a.status_code for a in again} == {200}
    assert {a.content for a in again} == {image.manifest}
    assert {a.headers["X-Pullthrough-Cache"] for a in again} <= {"revalidated", "hit"}
    assert proxy.count("HEAD", path_contains=f"/manifests/{image.tag}") == 1
    assert proxy.count("GET", path_contains=f"/manifests/{image.tag}") == 0
