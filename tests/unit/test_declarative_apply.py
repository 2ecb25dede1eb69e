"""Apply against an in-memory admin API through the real AdminClient and CLI: the safe order of
steps, a default rule handed over without a second default, a stop at the first refusal that
says what was done, and a second apply (and plan) that finds nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pullthrough.cli import declarative as cli_declarative
from pullthrough.client.admin import AdminClient, ClientSettings
from pullthrough.declarative.apply import ApplyFailed, apply_plan, apply_steps
from pullthrough.declarative.document import load_declaration
from pullthrough.declarative.plan import Plan, compute_plan
from pullthrough.declarative.state import read_state, server_secret_checks
from tests.unit.declarative_fake_admin import FakeAdminClient, FakeAdminServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "pullthrough.yaml"
USERNAME, TOKEN = "robot-zq-apply", "dckr_pat_Zq81x-apply"
ENV = {"DOCKER_HUB_USERNAME": USERNAME, "DOCKER_HUB_TOKEN": TOKEN}
SECRET = "ecr-pullthroughcache/docker-hub"
ENCODED = "ecr-pullthroughcache%2Fdocker-hub"


def plan_for(server: FakeAdminServer, path: Path = EXAMPLE) -> Plan:
    declaration = load_declaration(path, ENV)
    client = server.client()
    return compute_plan(
        declaration,
        read_state(client, {"rules", "secrets", "templates", "registry_policy", "scanning"}),
        server_secret_checks(client),
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pullthrough.yaml"
    path.write_text(text)
    return path


def test_apply_on_an_empty_server_in_the_safe_order_then_nothing_to_do() -> None:
    server = FakeAdminServer()
    done = apply_plan(plan_for(server), server.client())
    assert [s.done() for s in done] == [
        f'created secret "{SECRET}"',
        'created rule "docker-hub"',
        'created template "ROOT"',
        "updated scanning",
        "created registry_policy",
    ]
    assert server.writes == [
        ("PUT", f"/secrets/{SECRET}"),
        ("POST", "/rules"),
        ("POST", "/templates"),
        ("PUT", "/scanning"),
        ("PUT", "/registry-policy"),
    ]
    assert server.secrets[SECRET] == {"username": USERNAME, "accessToken": TOKEN}
    assert server.rules["docker-hub"]["tag_ttl"] == 300.0
    server.writes.clear()
    again = plan_for(server)
    assert again.pending == ()
    assert apply_plan(again, server.client()) == []
    assert server.writes == [("POST", "/secret-checks")]


def test_secret_names_with_slashes_travel_as_one_segment() -> None:
    server = FakeAdminServer()
    apply_plan(plan_for(server), server.client())
    assert f"/api/v1/secrets/{ENCODED}" in server.raw_paths


def test_a_new_default_rule_takes_over_without_two_defaults_at_once(tmp_path: Path) -> None:
    server = FakeAdminServer()
    server.rules["old"] = {"prefix": "old", "upstream": "https://old.example", "default": True}
    server.rules["stays"] = {"prefix": "stays", "upstream": "https://s.example", "default": False}
    path = write(
        tmp_path,
        "rules:\n"
        "  - {prefix: new, upstream: 'https://new.example', default: true}\n"
        "  - {prefix: stays, upstream: 'https://s.example'}\n",
    )
    plan = plan_for(server, path)
    assert [s.describe() for s in apply_steps(plan)] == [
        'set default: false on rule "old" (before another rule is default)',
        'create rule "new"',
        'delete rule "old"',
    ]
    apply_plan(plan, server.client())
    assert {p: r["default"] for p, r in server.rules.items()} == {"new": True, "stays": False}


def test_the_default_moves_between_rules_giving_up_first(tmp_path: Path) -> None:
    server = FakeAdminServer()
    server.rules["a"] = {"prefix": "a", "upstream": "https://a.example", "default": True}
    server.rules["b"] = {"prefix": "b", "upstream": "https://b.example", "default": False}
    path = write(
        tmp_path,
        "rules:\n"
        "  - {prefix: b, upstream: 'https://b.example', default: true}\n"
        "  - {prefix: a, upstream: 'https://a.example'}\n",
    )
    plan = plan_for(server, path)
    assert [s.describe() for s in apply_steps(plan)] == ['update rule "a"', 'update rule "b"']
    apply_plan(plan, server.client())
    assert server.rules["b"]["default"] is True


def test_secrets_go_after_the_rules_that_named_them(tmp_path: Path) -> None:
    server = FakeAdminServer()
    server.secrets["old-login"] = {"username": "u", "accessToken": "t"}
    server.rules["r"] = {"prefix": "r", "upstream": "https://r.example", "credential": "old-login"}
    path = write(
        tmp_path,
        "secrets:\n  new-login: {username: u, accessToken: '${env:DOCKER_HUB_TOKEN}'}\n"
        "rules:\n  - {prefix: r, upstream: 'https://r.example', credential: new-login}\n",
    )
    plan = plan_for(server, path)
    assert [s.describe() for s in apply_steps(plan)] == [
        'create secret "new-login"',
        'update rule "r"',
        'delete secret "old-login"',
    ]


def test_the_first_refusal_stops_the_apply_and_says_what_was_done() -> None:
    server = FakeAdminServer(refuse=("POST", "/templates"))
    with pytest.raises(ApplyFailed) as caught:
        apply_plan(plan_for(server), server.client())
    failed = caught.value
    assert failed.step.describe() == 'create template "ROOT"'
    assert failed.error.message == "refused by the test"
    assert [s.done() for s in failed.done] == [
        f'created secret "{SECRET}"',
        'created rule "docker-hub"',
    ]
    assert failed.total == 5
    assert server.writes[-1] == ("POST", "/templates")  # nothing after it was tried
    assert server.policy is None


# -- the commands --------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(tmp_path / "no-client.yaml"))
    monkeypatch.delenv("PULLTHROUGH_SERVER", raising=False)
    monkeypatch.delenv("PULLTHROUGH_TOKEN", raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def run(server: FakeAdminServer, *args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    cli_declarative.register(app)

    def factory(settings: ClientSettings) -> AdminClient:
        return FakeAdminClient(settings, server)

    result = CliRunner().invoke(app, list(args), obj=factory)
    for output in (result.stdout, result.stderr):
        assert TOKEN not in output
        assert USERNAME not in output
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("cli_env")
def test_plan_apply_plan_through_the_commands() -> None:
    server = FakeAdminServer()
    code, out, _ = run(server, "plan", "-f", str(EXAMPLE), "--detailed-exitcode")
    assert code == 3
    assert out.endswith("Plan: 4 to add, 1 to change, 0 to destroy.\n")
    assert server.writes == []

    code, out, err = run(server, "apply", "-f", str(EXAMPLE))
    assert (code, err) == (0, "")
    assert f'  created secret "{SECRET}"\n  created rule "docker-hub"\n' in out
    assert out.endswith("Apply complete: 4 added, 1 changed, 0 destroyed.\n")

    code, out, _ = run(server, "plan", "-f", str(EXAMPLE), "--detailed-exitcode")
    assert (code, out) == (0, f"No changes. The server matches {EXAMPLE}.\n")
    code, out, _ = run(server, "apply", "-f", str(EXAMPLE))
    assert (code, out) == (0, f"No changes. The server matches {EXAMPLE}.\n")
    for response in server.responses:
        assert TOKEN.encode() not in response


@pytest.mark.usefixtures("cli_env")
def test_plan_json_and_dry_run_change_nothing() -> None:
    import json

    server = FakeAdminServer()
    code, out, _ = run(server, "plan", "-f", str(EXAMPLE), "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert document["summary"] == {"add": 4, "change": 1, "destroy": 0}
    assert document["server"] == "http://127.0.0.1:5000"
    code, out, _ = run(server, "apply", "-f", str(EXAMPLE), "--dry-run")
    assert code == 0
    assert out.endswith("Plan: 4 to add, 1 to change, 0 to destroy.\n")
    assert server.writes == [] and server.rules == {}


@pytest.mark.usefixtures("cli_env")
def test_a_bad_file_is_exit_2_and_a_refusal_exit_1(tmp_path: Path) -> None:
    bad = write(tmp_path, "rules:\n  - {prefix: x}\n")
    code, out, err = run(FakeAdminServer(), "plan", "-f", str(bad))
    assert (code, out) == (2, "")
    assert err == f"pullthrough: {bad}: rules.0.upstream: required: add it\n"

    server = FakeAdminServer(refuse=("PUT", "/scanning"))
    code, out, err = run(server, "apply", "-f", str(EXAMPLE))
    assert code == 1
    assert err == (
        "pullthrough: apply stopped: update scanning failed: refused by the test. 3 of 5 steps "
        f'were applied before it (created secret "{SECRET}", created rule "docker-hub", '
        'created template "ROOT"); nothing after it was tried. Fix the cause and run apply '
        "again: it picks up from what the server has now\n"
    )
    assert server.policy is None
