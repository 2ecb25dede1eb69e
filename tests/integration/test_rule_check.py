"""A rule cannot silently name a missing secret: creating or updating one that does is refused
naming the secret and the command that stores it; `pullthrough rules check` (POST
/api/v1/rules/{prefix}/check) tries the upstream with the rule's credential and says whether
it authenticates; a pull through a rule whose secret is missing names the secret."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import pullthrough_cli, refusal
from tests.integration.cache_setup import PREFIX, SECRET, Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "wrong-Pa55-rc71q"


def rules_cli(cache: Cache, *args: str) -> subprocess.CompletedProcess[str]:
    return pullthrough_cli(cache.server, "rules", *args)


def put_secret(cache: Cache, username: str, password: str) -> None:
    value = json.dumps({"username": username, "accessToken": password})
    result = pullthrough_cli(cache.server, "secrets", "put", SECRET, stdin=value)
    assert result.returncode == 0, result.stderr


def check(cache: Cache, *extra: str) -> tuple[int, dict[str, object]]:
    """`pullthrough rules check up … --output json`: its exit code and its answer."""
    result = rules_cli(cache, "check", PREFIX, *extra, "--output", "json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_rules_check_says_whether_the_credential_authenticates(
    mode: AuthMode,
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    upstream = upstreams[mode]
    assert upstream.credentials is not None
    username, password = upstream.credentials
    # The rule names SECRET, stored nowhere yet (a configuration's rules seed the server even so).
    cache = start_cache(
        counting_proxy, pullthrough_server, upstream, credential_in_env=False, negative_ttl=0
    )
    image = fixture_images.oci_app

    # Missing: the check, its one-line refusal, and a pull all name the secret and the command.
    code, answer = check(cache)
    assert code == 1
    assert answer["result"] == "secret_missing"
    assert f"pullthrough secrets put {SECRET}" in str(answer["message"])
    line = refusal(rules_cli(cache, "check", PREFIX))
    assert f"secret {SECRET!r}" in line
    pulled = cache.get(
        f"/v2/{PREFIX}/{image.repo}/manifests/{image.tag}", headers={"Accept": UPSTREAM_ACCEPT}
    )
    assert pulled.status_code == 502, pulled.text
    message = pulled.json()["errors"][0]["message"]
    assert f"secret {SECRET!r}" in message
    assert f"pullthrough secrets put {SECRET}" in message
    assert "the rule has no credential" not in message
    assert cache.proxy.requests == []  # a missing secret costs no upstream request

    # Wrong: refused by the upstream, when logging in and when reading an image.
    put_secret(cache, username, WRONG_PASSWORD)
    code, answer = check(cache)
    assert (code, answer["result"], answer["ok"]) == (1, "refused", False)
    assert repr(username) in str(answer["message"])
    code, answer = check(cache, "--image", image.reference)
    assert (code, answer["result"]) == (1, "refused")

    # Right: authenticated, and the image's manifest is there.
    cache.proxy.reset()
    put_secret(cache, username, password)
    code, answer = check(cache)
    assert (code, answer["result"], answer["ok"]) == (0, "authenticated", True)
    assert cache.proxy.count("GET", path_contains="/v2/") >= 1  # a real request upstream
    code, answer = check(cache, "--image", image.reference)
    assert (code, answer["result"]) == (0, "authenticated")
    assert image.digest in str(answer["message"])
    code, answer = check(cache, "--image", f"{image.repo}:no-such-tag")
    assert (code, answer["result"]) == (1, "not_found")
    shown = rules_cli(cache, "check", PREFIX)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"rule {PREFIX}: ok (authenticated)")


def test_a_rule_naming_a_missing_secret_is_refused_by_the_api_and_the_cli(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    cache = start_cache(counting_proxy, pullthrough_server, upstream, credential_in_env=False)
    api = f"{cache.server.url}/api/v1"
    body = {"prefix": "other", "upstream": cache.proxy.url, "credential": "team/nowhere"}

    created = httpx.post(f"{api}/rules", json=body, timeout=30)
    assert created.status_code == 400, created.text
    assert created.json()["fields"] == [
        {"field": "credential", "message": "no secret named 'team/nowhere'"}
    ]
    assert "pullthrough secrets put team/nowhere" in created.json()["message"]
    replaced = httpx.put(f"{api}/rules/{PREFIX}", json={**body, "prefix": PREFIX}, timeout=30)
    assert replaced.status_code == 400, replaced.text

    line = refusal(
        rules_cli(cache, "create", "other", "--upstream", cache.proxy.url, "--credential", "x/y")
    )
    assert "secret 'x/y'" in line
    assert "pullthrough secrets put x/y" in line
    line = refusal(rules_cli(cache, "update", PREFIX, "--tag-ttl", "1m"))
    assert f"secret {SECRET!r}" in line  # the rule names SECRET, which is still missing
    assert httpx.get(f"{api}/rules/other", timeout=30).status_code == 404

    # Stored, the same rule is accepted.
    put_secret(cache, *upstream.credentials)
    made = rules_cli(
        cache, "create", "other", "--upstream", cache.proxy.url, "--credential", SECRET
    )
    assert made.returncode == 0, made.stderr


def test_apply_stores_secrets_before_the_rules_naming_them_and_stops_at_a_missing_one(
    pullthrough_server: StartPullthrough, tmp_path: Path
) -> None:
    server = pullthrough_server([])
    env = {"HUB_USERNAME": "hub-user", "HUB_TOKEN": "hub-Token-8812"}
    both = tmp_path / "both.yaml"
    both.write_text(
        "secrets:\n"
        "  team/hub:\n"
        "    username: ${env:HUB_USERNAME}\n"
        "    accessToken: ${env:HUB_TOKEN}\n"
        "rules:\n"
        "  - prefix: hub\n"
        "    upstream: https://registry-1.docker.io\n"
        "    credential: team/hub\n"
    )
    applied = pullthrough_cli(server, "apply", "-f", str(both), env=env)
    assert applied.returncode == 0, (applied.stdout, applied.stderr)
    assert applied.stdout.index('created secret "team/hub"') < applied.stdout.index(
        'created rule "hub"'
    )

    # A rule naming a secret that neither the file nor the server has stops the apply there.
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        "rules:\n"
        "  - prefix: hub\n"
        "    upstream: https://registry-1.docker.io\n"
        "    credential: team/hub\n"
        "  - prefix: quay\n"
        "    upstream: https://quay.io\n"
        "    credential: team/quay\n"
    )
    line = refusal(pullthrough_cli(server, "apply", "-f", str(missing), "--auto-approve"))
    assert 'create rule "quay" failed' in line
    assert "secret 'team/quay'" in line
    assert "pullthrough secrets put team/quay" in line
    rules = httpx.get(f"{server.url}/api/v1/rules", timeout=30).json()["rules"]
    assert [rule["prefix"] for rule in rules] == ["hub"]
