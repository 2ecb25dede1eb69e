"""`pullthrough plan` / `apply -f` against a real server: the README's example applied to an
empty server, then nothing left to change; one edited field planned as exactly that change;
a second apply that writes nothing; and secret values in no output, response or log."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartPullthrough
from tests.integration.admin_cli import pullthrough_cli
from tests.integration.cache_setup import wait_for
from tests.rig.server import PullthroughServer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "pullthrough.yaml"
SECRET = "ecr-pullthroughcache/docker-hub"
USERNAME = "zq-hub-user-5521"
TOKEN = "dckr_pat_zqX81-integration-4417"
NEW_TOKEN = "dckr_pat_zqY92-rotated-0093"
SECRET_ENV = {"DOCKER_HUB_USERNAME": USERNAME, "DOCKER_HUB_TOKEN": TOKEN}


class Operator:
    """Runs plan and apply as an operator would, and keeps every byte they printed."""

    def __init__(self, server: PullthroughServer) -> None:
        self.server = server
        self.printed: list[str] = []
        self.env = dict(SECRET_ENV)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = pullthrough_cli(self.server, *args, env=self.env)
        self.printed += [result.stdout, result.stderr]
        return result

    def plan(self, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("plan", "-f", str(path), "--detailed-exitcode", *extra)

    def apply(self, path: Path) -> str:
        result = self.run("apply", "-f", str(path))
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert result.stderr == ""
        return result.stdout


class Api:
    """Direct admin API reads, every answer kept to grep for secrets."""

    def __init__(self, server: PullthroughServer) -> None:
        self.base = f"{server.url}/api/v1"
        self.seen: list[bytes] = []

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.base + path, timeout=30, **kwargs)
        self.seen.append(response.content)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json()

    def get(self, path: str) -> Any:
        return self.call("GET", path)


@pytest.fixture
def empty_server(pullthrough_server: StartPullthrough) -> PullthroughServer:
    """A server seeded with no rules, no secrets, no templates, no policy."""
    return pullthrough_server([])


def test_the_readme_example_applies_once_and_then_matches(
    empty_server: PullthroughServer, tmp_path: Path
) -> None:
    operator, api = Operator(empty_server), Api(empty_server)
    first = operator.plan(EXAMPLE)
    assert first.returncode == 3, (first.stdout, first.stderr)
    assert first.stdout.endswith("Plan: 4 to add, 1 to change, 0 to destroy.\n")
    assert f'  + secret "{SECRET}" (value hidden)\n' in first.stdout
    assert api.get("/rules") == {"rules": []}  # plan changed nothing

    applied = operator.apply(EXAMPLE)
    assert (
        f'  created secret "{SECRET}"\n'
        '  created rule "docker-hub"\n'
        '  created template "ROOT"\n'
        "  updated scanning\n"
        "  created registry_policy\n"
    ) in applied
    assert applied.endswith("Apply complete: 4 added, 1 changed, 0 destroyed.\n")

    # The server holds what the file says, in its own words.
    (rule,) = api.get("/rules")["rules"]
    assert rule["credential"] == SECRET
    assert (rule["tag_ttl"], rule["max_stale"], rule["default"]) == (300, 604800, True)
    (template,) = api.get("/templates")["templates"]
    selection = template["lifecycle_policy"]["rules"][0]["selection"]
    assert (selection["countType"], selection["countNumber"]) == ("sinceImagePushed", 7)
    assert api.get("/registry-policy")["policy"]["Statement"][0]["Sid"] == "AcmePullThroughCache"
    assert api.get("/scanning")["rules"][0]["scan_frequency"] == "SCAN_ON_PUSH"
    assert [s["name"] for s in api.get("/secrets")["secrets"]] == [SECRET]
    check = {"name": SECRET, "username": USERNAME, "accessToken": TOKEN}
    assert api.call("POST", "/secret-checks", json=check)["matches"] is True

    # Plan finds nothing to do; a second apply writes nothing (updated_at stays).
    stamps = _stamps(api)
    again = operator.plan(EXAMPLE)
    assert (again.returncode, again.stdout) == (
        0,
        f"No changes. The server matches {EXAMPLE}.\n",
    )
    assert operator.apply(EXAMPLE) == f"No changes. The server matches {EXAMPLE}.\n"
    assert _stamps(api) == stamps

    # One edited field is planned as exactly that change, and only it.
    edited = tmp_path / "pullthrough.yaml"
    shutil.copy(EXAMPLE, edited)
    edited.write_text(EXAMPLE.read_text().replace("tag_ttl: 5m", "tag_ttl: 10m"))
    change = operator.plan(edited)
    assert change.returncode == 3
    assert change.stdout == (
        f"pullthrough will change {empty_server.url} to match {edited}:\n"
        "\n"
        '  ~ rule "docker-hub"\n'
        "      tag_ttl: 300 -> 600\n"
        "\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n"
    )
    json_plan = operator.run("plan", "-f", str(edited), "-o", "json")
    assert json_plan.returncode == 0
    assert '"field": "tag_ttl"' in json_plan.stdout
    operator.apply(edited)
    assert api.get("/rules")["rules"][0]["tag_ttl"] == 600
    assert operator.plan(edited).returncode == 0

    # A rotated token is a change to the secret, by name only.
    operator.env["DOCKER_HUB_TOKEN"] = NEW_TOKEN
    rotated = operator.plan(edited)
    assert rotated.returncode == 3
    assert f'  ~ secret "{SECRET}" (value hidden)\n' in rotated.stdout
    assert rotated.stdout.endswith("Plan: 0 to add, 1 to change, 0 to destroy.\n")
    operator.apply(edited)
    check["accessToken"] = NEW_TOKEN
    assert api.call("POST", "/secret-checks", json=check)["matches"] is True
    assert operator.plan(edited).returncode == 0

    _assert_no_secret_values(empty_server, operator, api)


def test_a_section_owns_its_kind_and_an_absent_one_is_left_alone(
    pullthrough_server: StartPullthrough, tmp_path: Path
) -> None:
    server = pullthrough_server(
        [
            {"prefix": "docker-hub", "upstream": "https://registry-1.docker.io", "default": True},
            {"prefix": "ghcr", "upstream": "https://ghcr.io"},
        ]
    )
    operator, api = Operator(server), Api(server)
    only_rules = tmp_path / "rules.yaml"
    only_rules.write_text(
        "rules:\n"
        "  - prefix: docker-hub\n"
        "    upstream: https://registry-1.docker.io\n"
        "    default: true\n"
        "    max_stale: 7d\n"
        "  - prefix: quay\n"
        "    upstream: https://quay.io\n"
    )
    planned = operator.plan(only_rules)
    assert planned.returncode == 3
    assert planned.stdout == (
        f"pullthrough will change {server.url} to match {only_rules}:\n"
        "\n"
        '  ~ rule "docker-hub"\n'
        "      max_stale: null -> 604800\n"
        "\n"
        '  - rule "ghcr"\n'
        "\n"
        '  + rule "quay"\n'
        '      prefix: "quay"\n'
        '      upstream: "https://quay.io"\n'
        "      default: false\n"
        "      tag_ttl: 300\n"
        "      negative_ttl: 30\n"
        "      eager_fill: true\n"
        "\n"
        "Plan: 1 to add, 1 to change, 1 to destroy.\n"
    )
    # Templates are not in the file, so a template on the server is not touched.
    api.call("PUT", "/templates/docker-hub", json={"scan_on_pull": True})
    operator.apply(only_rules)
    assert [r["prefix"] for r in api.get("/rules")["rules"]] == ["docker-hub", "quay"]
    assert [t["prefix"] for t in api.get("/templates")["templates"]] == ["docker-hub"]
    assert operator.plan(only_rules).returncode == 0


def test_errors_are_one_line_with_the_contracts_exit_codes(
    empty_server: PullthroughServer, tmp_path: Path
) -> None:
    operator = Operator(empty_server)
    operator.env = {}  # DOCKER_HUB_TOKEN unset
    unresolved = operator.plan(EXAMPLE)
    assert unresolved.returncode == 2
    assert unresolved.stdout == ""
    assert unresolved.stderr == (
        f"pullthrough: {EXAMPLE}: secrets.{SECRET}.username: environment variable "
        "DOCKER_HUB_USERNAME is not set: export it before running pullthrough\n"
        f"pullthrough: {EXAMPLE}: secrets.{SECRET}.accessToken: environment variable "
        "DOCKER_HUB_TOKEN is not set: export it before running pullthrough\n"
    )
    unreachable = pullthrough_cli(
        None, "plan", "-f", str(EXAMPLE), "--server", "http://127.0.0.1:9", env=SECRET_ENV
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("pullthrough: cannot reach http://127.0.0.1:9")
    assert unreachable.stderr.count("\n") == 1


def test_with_auth_on_the_policy_goes_last_and_the_admin_keeps_access(
    pullthrough_server: StartPullthrough, tmp_path: Path
) -> None:
    server = pullthrough_server([], auth={"enabled": True})
    config = str(server.config_path)
    created = pullthrough_cli(
        None, "apikeys", "create", "ops", "--org", "acme", "--group", "platform", "--config", config
    )
    assert created.returncode == 0, created.stderr
    ops = f"ops:{created.stdout.strip()}"
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps(OPS_ADMINISTERS))
    put = pullthrough_cli(None, "policy", "put", "-f", str(bootstrap), "--config", config)
    assert put.returncode == 0, put.stderr
    operator = Operator(server)
    anonymous = operator.plan(EXAMPLE)
    assert anonymous.returncode == 1
    assert "pass --token" in anonymous.stderr

    operator.env["PULLTHROUGH_TOKEN"] = ops
    wait_for(lambda: operator.plan(EXAMPLE).returncode == 3, 10, "the bootstrap policy")
    # The example's policy replaces the bootstrap one (a change, the rest is new) and lets
    # group "platform" administer, so ops still can after it.
    assert operator.apply(EXAMPLE).endswith("Apply complete: 3 added, 2 changed, 0 destroyed.\n")
    wait_for(lambda: operator.plan(EXAMPLE).returncode == 0, 10, "the applied policy")

    # A policy that leaves nobody an admin is warned about, and applied after everything else.
    locked = tmp_path / "locked.yaml"
    locked.write_text(
        EXAMPLE.read_text()
        .replace("countNumber: 7", "countNumber: 14")
        .replace('Action: ["registry:*"]', 'Action: ["registry:Pull"]')
    )
    planned = operator.plan(locked)
    assert planned.returncode == 3
    assert 'Warning: no statement of the registry policy allows "registry:Admin"' in planned.stdout
    applied = operator.apply(locked)
    assert applied.index('updated template "ROOT"') < applied.index("updated registry_policy")
    wait_for(lambda: operator.plan(locked).returncode == 1, 10, "the locking policy")
    denied = operator.plan(locked)
    assert "registry:Admin" in denied.stderr
    assert denied.stderr.count("\n") == 1


OPS_ADMINISTERS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OpsAdministers",
            "Effect": "Allow",
            "Principal": {"ApiKey": ["ops"]},
            "Action": ["registry:Admin"],
            "Resource": "*",
        }
    ],
}


def _stamps(api: Api) -> list[str]:
    rules = [r["updated_at"] for r in api.get("/rules")["rules"]]
    templates = [t["updated_at"] for t in api.get("/templates")["templates"]]
    secrets = [s["updated_at"] for s in api.get("/secrets")["secrets"]]
    others = [api.get("/registry-policy")["updated_at"], api.get("/scanning")["updated_at"]]
    return [*rules, *templates, *secrets, *others]


def _assert_no_secret_values(server: PullthroughServer, operator: Operator, api: Api) -> None:
    api.get(f"/secrets/{SECRET.replace('/', '%2F')}")
    api.get("/status")
    values = [USERNAME, TOKEN, NEW_TOKEN]
    needles = [v.encode() for v in values]
    needles += [base64.b64encode(f"{USERNAME}:{v}".encode()) for v in (TOKEN, NEW_TOKEN)]
    log = server.log_text().encode()
    printed = "\n".join(operator.printed).encode()
    assert printed  # the commands did print
    for needle in needles:
        assert needle not in printed, f"a secret value was printed: {needle!r}"
        assert needle not in log, f"a secret value is in the server log: {needle!r}"
        for seen in api.seen:
            assert needle not in seen, f"a secret value is in a response: {seen[:300]!r}"
