"""The admin CLI over a fake admin API: each command's requests, tables and `--output json`,
and every refusal as one line on stderr with exit code 1 (server) or 2 (usage)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from pullthrough.cli import access as cli_access
from pullthrough.cli import lifecycle as cli_lifecycle
from pullthrough.cli import repos as cli_repos
from pullthrough.cli import rules as cli_rules
from pullthrough.cli import secrets as cli_secrets
from pullthrough.cli import status as cli_status
from tests.unit.fake_admin import NOW, FakeAdminServer

SERVER = "http://cache.test:5000"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    for module in (cli_rules, cli_repos, cli_secrets, cli_access, cli_lifecycle):
        module.register(app)
    cli_status.register(app)
    return app


@pytest.fixture
def fake() -> FakeAdminServer:
    return FakeAdminServer()


@pytest.fixture(autouse=True)
def no_client_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(tmp_path / "no-client.yaml"))
    for name in ("PULLTHROUGH_SERVER", "PULLTHROUGH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def run(app: typer.Typer, fake: FakeAdminServer, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--server", SERVER], input=stdin, obj=fake.client)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def refused(result: Result, code: int = 1) -> str:
    """The one stderr line of a refusal."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pullthrough: ")
    return lines[0]


def last_body(fake: FakeAdminServer) -> Any:
    return json.loads(fake.requests[-1].content)


# -- rules ------------------------------------------------------------------------------------


def test_rules_create_list_get_update_delete(app: typer.Typer, fake: FakeAdminServer) -> None:
    created = ok(
        run(
            app,
            fake,
            "rules",
            "create",
            "ghcr/org",
            "--upstream",
            "https://ghcr.io",
            "--credential",
            "pullthrough/ghcr",
            "--mirror-of",
            "ghcr.io",
            "--mirror-of",
            "ghcr.example",
            "--tag-ttl",
            "10m",
            "--max-stale",
            "7d",
        )
    )
    assert "created rule ghcr/org: pull cache.test:5000/ghcr/org/<image>" in created
    assert last_body(fake) == {
        "prefix": "ghcr/org",
        "upstream": "https://ghcr.io",
        "credential": "pullthrough/ghcr",
        "mirror_of": ["ghcr.io", "ghcr.example"],
        "tag_ttl": "10m",
        "max_stale": "7d",
    }
    ok(
        run(
            app,
            fake,
            "rules",
            "create",
            "hub",
            "--upstream",
            "https://registry-1.docker.io",
            "--default",
            "--implicit-namespace",
            "library",
        )
    )

    table = ok(run(app, fake, "rules", "list"))
    assert table.index("ghcr/org") < table.index("hub")
    assert "https://ghcr.io" in table
    assert "10m" in table and "7d" in table
    listing = json.loads(ok(run(app, fake, "rules", "list", "-o", "json")))
    assert [r["prefix"] for r in listing["rules"]] == ["ghcr/org", "hub"]

    detail = ok(run(app, fake, "rules", "get", "ghcr/org"))
    # A prefix with a slash travels as one encoded path segment.
    assert fake.requests[-1].url.raw_path == b"/api/v1/rules/ghcr%2Forg"
    assert "pullthrough/ghcr" in detail
    assert "ghcr.io, ghcr.example" in detail

    ok(run(app, fake, "rules", "update", "ghcr/org", "--tag-ttl", "1h", "--credential", ""))
    put = last_body(fake)
    assert fake.requests[-1].method == "PUT"
    assert put["tag_ttl"] == "1h"
    assert "credential" not in put  # cleared back to none
    assert put["upstream"] == "https://ghcr.io"  # the rest kept
    assert put["max_stale"] == 7 * 86400
    assert put["mirror_of"] == ["ghcr.io", "ghcr.example"]
    assert fake.rules["ghcr/org"]["credential"] is None
    assert fake.rules["ghcr/org"]["tag_ttl"] == 3600

    assert ok(run(app, fake, "rules", "delete", "ghcr/org")) == "deleted rule ghcr/org\n"
    assert list(fake.rules) == ["hub"]


def test_rule_refusals_are_one_line_with_exit_codes(
    app: typer.Typer, fake: FakeAdminServer
) -> None:
    line = refused(run(app, fake, "rules", "get", "nope"))
    assert line == "pullthrough: no rule with prefix 'nope'"
    ok(run(app, fake, "rules", "create", "up", "--upstream", "https://up.test"))
    line = refused(run(app, fake, "rules", "create", "up", "--upstream", "https://up.test"))
    assert "exists" in line
    sent = len(fake.requests)
    usage = run(app, fake, "rules", "create", "other")
    assert usage.exit_code == 2
    assert "--upstream" in usage.stderr
    assert refused(run(app, fake, "rules", "update", "up"), 2)  # nothing to change
    assert len(fake.requests) == sent  # usage errors never reach the server


def test_invalid_request_names_the_field(
    app: typer.Typer, fake: FakeAdminServer, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": "all of them"}))
    line = refused(run(app, fake, "templates", "put", "ROOT", "--lifecycle-policy", str(policy)))
    assert line == "pullthrough: invalid template (lifecycle_policy.rules: must be a list)"


def test_a_401_says_how_to_log_in_and_the_token_goes_as_basic(
    app: typer.Typer, fake: FakeAdminServer
) -> None:
    fake.token = "Basic " + base64.b64encode(b"ci:ptk_secret").decode()
    line = refused(run(app, fake, "rules", "list"))
    assert "pass --token" in line
    ok(run(app, fake, "rules", "list", "--token", "ci:ptk_secret"))
    login = "Basic " + base64.b64encode(b"token:eyJ.login").decode()
    fake.token = login
    ok(run(app, fake, "rules", "list", "--token", "eyJ.login"))


def test_usage_errors_from_the_client_configuration_exit_2(
    app: typer.Typer, fake: FakeAdminServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = CliRunner().invoke(app, ["rules", "list", "--server", "ftp://x"], obj=fake.client)
    assert refused(bad, 2).startswith("pullthrough: server 'ftp://x' is not an http(s) URL")
    client_file = tmp_path / "client.yaml"
    client_file.write_text("server: http://cache.test:5000\npassword: x\n")
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(client_file))
    line = refused(CliRunner().invoke(app, ["rules", "list"], obj=fake.client), 2)
    assert "unknown key 'password'" in line
    assert fake.requests == []


def test_client_file_names_server_and_token(
    app: typer.Typer, fake: FakeAdminServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_file = tmp_path / "client.yaml"
    client_file.write_text("server: http://from-file.test:5000\ntoken: ci:ptk_file\n")
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(client_file))
    ok(CliRunner().invoke(app, ["rules", "list"], obj=fake.client))
    request = fake.requests[-1]
    assert request.url.host == "from-file.test"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"ci:ptk_file").decode()


def test_an_unreachable_server_is_exit_1_with_what_to_check(app: typer.Typer) -> None:
    # Port 9 on loopback (discard) is closed on the test machines: the connection is refused.
    result = CliRunner().invoke(app, ["rules", "list", "--server", "http://127.0.0.1:9"])
    line = refused(result)
    assert "cannot reach http://127.0.0.1:9" in line
    assert "PULLTHROUGH_SERVER" in line


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_put_list_delete_never_print_values(
    app: typer.Typer, fake: FakeAdminServer, tmp_path: Path
) -> None:
    name = "pullthrough/docker-hub"
    stored = ok(run(app, fake, "secrets", "put", name, "--username", "bob", stdin="tok-1\n"))
    assert stored == f"stored secret {name}\n"
    assert fake.secrets[name] == {"username": "bob", "accessToken": "tok-1"}
    assert fake.requests[-1].url.raw_path == b"/api/v1/secrets/pullthrough%2Fdocker-hub"

    value = json.dumps({"username": "alice", "password": "tok-2"})
    replaced = ok(run(app, fake, "secrets", "put", name, stdin=value))
    assert replaced.startswith(f"replaced secret {name}")
    assert fake.secrets[name] == {"username": "alice", "accessToken": "tok-2"}

    token_file = tmp_path / "token"
    token_file.write_text("tok-3\n")
    ok(run(app, fake, "secrets", "put", "other", "-u", "carol", "-f", str(token_file)))
    assert fake.secrets["other"] == {"username": "carol", "accessToken": "tok-3"}

    table = ok(run(app, fake, "secrets", "list"))
    assert name in table and "other" in table
    listing = json.loads(ok(run(app, fake, "secrets", "list", "--output", "json")))
    assert [s["name"] for s in listing["secrets"]] == [name, "other"]
    for output in (stored, replaced, table, json.dumps(listing)):
        for secret in ("tok-1", "tok-2", "tok-3"):
            assert secret not in output

    assert ok(run(app, fake, "secrets", "delete", name)) == f"deleted secret {name}\n"
    line = refused(run(app, fake, "secrets", "delete", name))
    assert line == f"pullthrough: no secret named {name!r}"


def test_bad_secret_values_are_usage_errors_that_reach_no_server(
    app: typer.Typer, fake: FakeAdminServer
) -> None:
    line = refused(run(app, fake, "secrets", "put", "x", stdin="not json"), 2)
    assert "not JSON" in line
    line = refused(run(app, fake, "secrets", "put", "x", "--username", "bob", stdin=""), 2)
    assert "no access token for bob" in line
    line = refused(run(app, fake, "secrets", "put", "bad name!", stdin="{}"), 2)
    assert "is not a secret name" in line
    assert "not json" not in line
    assert fake.requests == []


# -- policy and templates ---------------------------------------------------------------------

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Admins",
            "Effect": "Allow",
            "Principal": {"User": ["alice"]},
            "Action": "registry:*",
            "Resource": "*",
        }
    ],
}


def test_policy_get_put_delete(app: typer.Typer, fake: FakeAdminServer, tmp_path: Path) -> None:
    default = run(app, fake, "policy", "get")
    assert "the built-in default applies" in default.stderr
    assert json.loads(ok(default))["Statement"][0]["Sid"] == "AuthenticatedPrincipalsPullAndImport"

    file = tmp_path / "policy.json"
    file.write_text(json.dumps(POLICY))
    assert ok(run(app, fake, "policy", "put", "-f", str(file))) == "policy saved\n"
    assert fake.policy == POLICY
    assert json.loads(ok(run(app, fake, "policy", "get"))) == POLICY
    ok(run(app, fake, "policy", "put", "-f", "-", stdin=json.dumps(POLICY)))

    file.write_text(json.dumps({"Statement": [{"Effect": "Maybe"}]}))
    line = refused(run(app, fake, "policy", "put", "-f", str(file)), 2)
    assert line.startswith("pullthrough: invalid policy:")
    line = refused(run(app, fake, "policy", "put", "-f", str(tmp_path / "missing.json")), 2)
    assert "cannot read the policy" in line

    ok(run(app, fake, "policy", "delete"))
    assert fake.policy is None


def test_templates_put_list_get_delete(
    app: typer.Typer, fake: FakeAdminServer, tmp_path: Path
) -> None:
    lifecycle = {"rules": [{"rulePriority": 1, "selection": {}, "action": {"type": "expire"}}]}
    file = tmp_path / "lifecycle.json"
    file.write_text(json.dumps(lifecycle))
    saved = ok(
        run(
            app,
            fake,
            "templates",
            "put",
            "docker-hub",
            "--lifecycle-policy",
            str(file),
            "--scan-on-pull",
            "--description",
            "hub images",
        )
    )
    assert "template docker-hub saved" in saved
    assert last_body(fake) == {
        "prefix": "docker-hub",
        "lifecycle_policy": lifecycle,  # an object, not text
        "scan_on_pull": True,
        "description": "hub images",
    }
    ok(run(app, fake, "templates", "put", "ROOT"))

    table = ok(run(app, fake, "templates", "list"))
    assert "docker-hub" in table and "hub images" in table and "ROOT" in table
    listing = json.loads(ok(run(app, fake, "templates", "list", "-o", "json")))
    assert [t["prefix"] for t in listing["templates"]] == ["ROOT", "docker-hub"]
    got = json.loads(ok(run(app, fake, "templates", "get", "docker-hub", "-o", "json")))
    assert got["lifecycle_policy"] == lifecycle
    assert "expire" in ok(run(app, fake, "templates", "get", "docker-hub"))

    file.write_text("{not json")
    assert "is not JSON" in refused(
        run(app, fake, "templates", "put", "ROOT", "--lifecycle-policy", str(file)), 2
    )
    ok(run(app, fake, "templates", "delete", "docker-hub"))
    line = refused(run(app, fake, "templates", "delete", "docker-hub"))
    assert line == "pullthrough: no template for prefix 'docker-hub'"


# -- cache contents and status ----------------------------------------------------------------

REPOSITORY: dict[str, Any] = {
    "name": "docker-hub/library/nginx",
    "rule": "docker-hub",
    "created_at": NOW,
    "image_count": 2,
    "tag_count": 1,
    "size_bytes": 3 * 1024 * 1024,
    "last_pulled_at": NOW,
    "pull_count": 7,
}
IMAGE: dict[str, Any] = {
    "repository": "docker-hub/library/nginx",
    "digest": "sha256:" + "ab" * 32,
    "media_type": "application/vnd.oci.image.index.v1+json",
    "size_bytes": 2048,
    "tags": ["1.27", "latest"],
    "platforms": ["linux/amd64", "linux/arm64"],
    "cached_at": NOW,
    "last_pulled_at": None,
    "pull_count": 0,
    "rule": "docker-hub",
}


def test_repos_images_and_tags(app: typer.Typer, fake: FakeAdminServer) -> None:
    fake.documents["/repositories"] = {"repositories": [REPOSITORY]}
    fake.documents["/repositories/docker-hub/library/nginx"] = REPOSITORY
    fake.documents["/images"] = {"images": [IMAGE]}
    tag = {"name": "1.27", "digest": IMAGE["digest"], "updated_at": NOW}
    fake.documents["/tags"] = {"tags": [tag]}

    table = ok(run(app, fake, "repos", "list", "--prefix", "docker-hub"))
    assert fake.requests[-1].url.params["prefix"] == "docker-hub"
    assert "docker-hub/library/nginx" in table
    assert "3.0 MiB" in table
    assert json.loads(ok(run(app, fake, "repos", "list", "-o", "json"))) == {
        "repositories": [REPOSITORY]
    }

    images = ok(run(app, fake, "images", "list", "docker-hub/library/nginx"))
    assert fake.requests[-1].url.params["repository"] == "docker-hub/library/nginx"
    assert "sha256:abababababab" in images
    assert "1.27, latest" in images
    assert "linux/amd64, linux/arm64" in images
    assert "2.0 KiB" in images
    whole = json.loads(ok(run(app, fake, "images", "list", "x", "-o", "json")))
    assert whole["images"][0]["digest"] == IMAGE["digest"]

    assert IMAGE["digest"] in ok(run(app, fake, "tags", "list", "docker-hub/library/nginx"))
    del fake.documents["/images"]
    line = refused(run(app, fake, "images", "list", "nowhere"))
    assert line == "pullthrough: no repository nowhere"


STATUS = {
    "version": "0.1.0",
    "rules": 2,
    "repositories": 3,
    "images": 4,
    "blobs": 5,
    "stored_bytes": 1536,
    "upstreams": [
        {
            "prefix": "hub",
            "upstream": "https://registry-1.docker.io",
            "reachable": True,
            "last_success_at": NOW,
            "last_error": None,
            "last_error_at": None,
            "blocked_until": None,
            "rate_limit": {
                "limit": 100,
                "remaining": 7,
                "window": 21600,
                "source": "203.0.113.9",
                "seen_at": NOW,
            },
        },
        {
            "prefix": "ghcr",
            "upstream": "https://ghcr.io",
            "reachable": False,
            "last_success_at": None,
            "last_error": "connection refused",
            "last_error_at": NOW,
            "blocked_until": None,
            "rate_limit": None,
        },
    ],
    "stats": {
        "since": NOW,
        "total": {"hits": 3, "misses": 1, "bytes_from_cache": 2048, "bytes_from_upstream": 10},
        "rules": [
            {
                "prefix": "hub",
                "hits": 3,
                "misses": 1,
                "bytes_from_cache": 2048,
                "bytes_from_upstream": 10,
            },
        ],
    },
}


def test_status_table_json_and_low_headroom_warning(
    app: typer.Typer, fake: FakeAdminServer
) -> None:
    fake.documents["/status"] = STATUS
    text = ok(run(app, fake, "status"))
    assert "7/100 per 6h" in text
    assert "connection refused" in text
    assert "75%" in text  # hub's hit ratio
    assert "Cached: 3 repositories, 4 images, 5 blobs (1.5 KiB)" in text
    assert "warning: rule hub: https://registry-1.docker.io has 7 of 100 pulls left per 6h" in text
    assert json.loads(ok(run(app, fake, "status", "--output", "json"))) == STATUS
