"""The operator CLI as a client of a real server's admin API: rules change what the server
routes without a restart; secrets, the policy and templates round-trip; repos, images, tags and
status show what the cache holds; refusals are one line with exit code 1 (2 for usage); with
auth on, only a principal the policy makes an admin gets in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok, pullthrough_cli, refusal
from tests.integration.cache_setup import Cache, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.oci_build import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy

pytestmark = pytest.mark.integration

ACCEPT = {"Accept": ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST])}
RELOAD = 10.0  # every worker re-reads rules and policy within about a second; slack for CI


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    return start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])


def status_of(cache: Cache, path: str) -> int:
    return cache.get(path, headers=ACCEPT).status_code


def as_json(cache: Cache, *args: str) -> Any:
    return json.loads(admin_ok(cache.server, *args, "--output", "json"))


def test_rules_change_what_the_server_routes_without_a_restart(cache: Cache) -> None:
    server = cache.server
    table = admin_ok(server, "rules", "list")
    assert "up" in table and cache.proxy.url in table
    assert [r["prefix"] for r in as_json(cache, "rules", "list")["rules"]] == ["up"]

    created = admin_ok(
        server,
        "rules",
        "create",
        "mirror/team",
        "--upstream",
        cache.proxy.url,
        "--upstream-namespace",
        "team",
        "--tag-ttl",
        "1m",
        "--max-stale",
        "1d",
    )
    assert f"created rule mirror/team: pull {server.host}/mirror/team/<image>" in created
    wait_for(
        lambda: status_of(cache, "/v2/mirror/team/oci-app/manifests/v1") == 200,
        RELOAD,
        "the new rule to route",
    )
    rule = as_json(cache, "rules", "get", "mirror/team")
    assert (rule["tag_ttl"], rule["max_stale"], rule["negative_ttl"]) == (60, 86400, 30)
    assert rule["cache_prefix_url"] == f"{server.host}/mirror/team"
    assert rule["upstream_namespace"] == "team"
    detail = admin_ok(server, "rules", "get", "mirror/team")
    assert "1m" in detail and "1d" in detail

    updated = json.loads(
        admin_ok(server, "rules", "update", "mirror/team", "--tag-ttl", "0", "-o", "json")
    )
    assert updated["tag_ttl"] == 0
    assert updated["upstream"] == cache.proxy.url  # unchanged fields keep their values
    assert updated["max_stale"] == 86400
    cleared = as_json(cache, "rules", "update", "mirror/team", "--max-stale", "")
    assert cleared["max_stale"] is None

    duplicate = pullthrough_cli(
        server, "rules", "create", "mirror/team", "--upstream", cache.proxy.url
    )
    assert "mirror/team" in refusal(duplicate)
    second_default = pullthrough_cli(
        server, "rules", "create", "other", "--upstream", cache.proxy.url, "--default"
    )
    refusal(second_default)
    bad_upstream = pullthrough_cli(server, "rules", "create", "bad", "--upstream", "ftp://x")
    assert "upstream" in refusal(bad_upstream)
    assert "--upstream" in refusal(pullthrough_cli(server, "rules", "create", "bad"), 2)

    assert admin_ok(server, "rules", "delete", "mirror/team") == "deleted rule mirror/team\n"
    wait_for(
        lambda: status_of(cache, "/v2/mirror/team/many-layers/manifests/v1") == 404,
        RELOAD,
        "the deleted rule to stop routing",
    )
    gone = refusal(pullthrough_cli(server, "rules", "get", "mirror/team"))
    assert "mirror/team" in gone
    assert refusal(pullthrough_cli(server, "rules", "delete", "mirror/team"))


def test_secrets_policy_and_templates_round_trip(cache: Cache, tmp_path: Path) -> None:
    server = cache.server
    value = "tok-" + "q7" * 10
    stored = admin_ok(server, "secrets", "put", "org/hub", "--username", "bob", stdin=value)
    assert stored == "stored secret org/hub\n"
    replaced = admin_ok(server, "secrets", "put", "org/hub", "-u", "bob", stdin=value + "x")
    assert replaced.startswith("replaced secret org/hub")
    listing = admin_ok(server, "secrets", "list")
    assert "org/hub" in listing
    assert [s["name"] for s in as_json(cache, "secrets", "list")["secrets"]] == ["org/hub"]
    assert value not in listing
    bad = pullthrough_cli(server, "secrets", "put", "org/x", stdin='{"username": "bob"}')
    assert "accessToken" in refusal(bad, 2)
    admin_ok(server, "secrets", "delete", "org/hub")
    missing = refusal(pullthrough_cli(server, "secrets", "delete", "org/hub"))
    assert missing == "pullthrough: no secret named 'org/hub'"

    default = pullthrough_cli(server, "policy", "get")
    assert default.returncode == 0, default.stderr
    assert "the built-in default applies" in default.stderr
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Everyone",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "registry:Pull",
                "Resource": "repository/up/*",
            }
        ],
    }
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(policy))
    assert admin_ok(server, "policy", "put", "-f", str(file)) == "policy saved\n"
    assert json.loads(admin_ok(server, "policy", "get"))["Statement"][0]["Sid"] == "Everyone"
    admin_ok(server, "policy", "delete")
    assert "built-in default" in pullthrough_cli(server, "policy", "get").stderr

    lifecycle = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 3,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    lifecycle_file = tmp_path / "lifecycle.json"
    lifecycle_file.write_text(json.dumps(lifecycle))
    admin_ok(
        server,
        "templates",
        "put",
        "up",
        "--lifecycle-policy",
        str(lifecycle_file),
        "--description",
        "keep three",
    )
    table = admin_ok(server, "templates", "list")
    assert "up" in table and "keep three" in table
    template = as_json(cache, "templates", "get", "up")
    assert template["lifecycle_policy"] == lifecycle
    assert template["applied_for"] == ["PULL_THROUGH_CACHE"]
    lifecycle_file.write_text(json.dumps({"rules": [{"rulePriority": "first"}]}))
    invalid = pullthrough_cli(
        server, "templates", "put", "up", "--lifecycle-policy", str(lifecycle_file)
    )
    assert "lifecycle" in refusal(invalid)
    admin_ok(server, "templates", "delete", "up")
    assert as_json(cache, "templates", "list")["templates"] == []


def test_repos_images_tags_and_status_show_what_the_cache_holds(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    server = cache.server
    multi = fixture_images.multi
    copy = skopeo_copy(cache.ref(multi.reference), tmp_path / "multi", all_platforms=True)
    assert copy.returncode == 0, copy.stderr
    copy = skopeo_copy(cache.ref(fixture_images.oci_app.reference), tmp_path / "app")
    assert copy.returncode == 0, copy.stderr

    repos = admin_ok(server, "repos", "list")
    assert "up/team/multi" in repos and "up/team/oci-app" in repos
    listed = as_json(cache, "repos", "list", "--prefix", "up/team/multi")["repositories"]
    assert [r["name"] for r in listed] == ["up/team/multi"]
    (repo,) = listed
    assert repo["rule"] == "up"
    assert repo["tag_count"] == 1
    assert repo["size_bytes"] == sum(b.size for b in multi.all_blobs().values())
    assert as_json(cache, "repos", "get", "up/team/multi")["name"] == "up/team/multi"

    images = admin_ok(server, "images", "list", "up/team/multi")
    assert multi.digest[:19] in images
    assert "linux/amd64, linux/arm64" in images
    assert "latest" in images
    documents = as_json(cache, "images", "list", "up/team/multi")["images"]
    index = next(image for image in documents if image["digest"] == multi.digest)
    assert index["tags"] == ["latest"]
    assert sorted(index["platforms"]) == ["linux/amd64", "linux/arm64"]
    tags = as_json(cache, "tags", "list", "up/team/multi")["tags"]
    assert [(t["name"], t["digest"]) for t in tags] == [("latest", multi.digest)]
    assert multi.digest in admin_ok(server, "tags", "list", "up/team/multi")
    assert refusal(pullthrough_cli(server, "images", "list", "up/team/never-pulled"))

    def counted() -> bool:
        stats = as_json(cache, "status")["stats"]["total"]
        return bool(stats["misses"] > 0 and stats["bytes_from_upstream"] > 0)

    wait_for(counted, 15, "the statistics to be recorded")
    document = as_json(cache, "status")
    assert document["rules"] == 1
    assert document["repositories"] == 2
    (upstream,) = document["upstreams"]
    assert (upstream["prefix"], upstream["upstream"]) == ("up", cache.proxy.url)
    text = admin_ok(server, "status")
    assert cache.proxy.url in text
    assert f"Cached: 2 repositories, {document['images']} images" in text


def test_with_auth_on_the_api_wants_a_principal_the_policy_makes_an_admin(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}},
    )
    config = str(cache.server.config_path)
    keys = {}
    for name in ("ops", "ci"):
        created = pullthrough_cli(None, "apikeys", "create", name, "--config", config)
        assert created.returncode == 0, created.stderr
        keys[name] = f"{name}:{created.stdout.strip()}"

    anonymous = refusal(pullthrough_cli(cache.server, "rules", "list"))
    assert "pass --token" in anonymous
    # The default policy lets keys pull, not administer.
    denied = refusal(pullthrough_cli(cache.server, "rules", "list", token=keys["ci"]))
    assert "registry:Admin" in denied

    # Bootstrap: the first admin policy goes into the data directory.
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(OPS_ADMINISTERS))
    bootstrap = pullthrough_cli(None, "policy", "put", "-f", str(policy), "--config", config)
    assert bootstrap.returncode == 0, bootstrap.stderr

    def ops_gets_in() -> bool:
        return pullthrough_cli(cache.server, "rules", "list", token=keys["ops"]).returncode == 0

    wait_for(ops_gets_in, RELOAD, "the bootstrap policy to apply")
    assert "Ops" in admin_ok(cache.server, "policy", "get", token=keys["ops"])
    assert "registry:Admin" in refusal(
        pullthrough_cli(cache.server, "secrets", "list", token=keys["ci"])
    )
    # A login token from `login-password` works as --token too.
    login = pullthrough_cli(None, "login-password", "--principal", "ops", "--config", config)
    assert login.returncode == 0, login.stderr
    admin_ok(cache.server, "rules", "list", token=login.stdout.strip())
    # So do the environment and the client file.
    env_token = pullthrough_cli(
        cache.server, "rules", "list", env={"PULLTHROUGH_TOKEN": keys["ops"]}
    )
    assert env_token.returncode == 0, env_token.stderr
    client_file = tmp_path / "client.yaml"
    client_file.write_text(f"server: {cache.server.url}\ntoken: {keys['ops']}\n")
    from_file = pullthrough_cli(
        None, "secrets", "list", env={"PULLTHROUGH_CLIENT_CONFIG": str(client_file)}
    )
    assert from_file.returncode == 0, from_file.stderr
    assert httpx.get(f"{cache.server.url}/api/v1/rules", timeout=30).status_code == 401


OPS_ADMINISTERS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OpsAdministers",
            "Effect": "Allow",
            "Principal": {"ApiKey": ["ops"]},
            "Action": "registry:*",
            "Resource": "*",
        }
    ],
}
