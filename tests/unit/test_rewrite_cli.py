"""`pullthrough rewrite` with the server's rules injected (an admin client that answers
`GET /rules` from a list): files written in place, --check, --diff, stdin, exit codes."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from pullthrough.cli import rewrite as cli_rewrite
from pullthrough.client.admin import AdminClient, AdminError, ClientSettings
from pullthrough.config import Settings

DATA = Path(__file__).parent.parent / "data" / "rewrite"
SERVER = "http://127.0.0.1:5000"
RULES: list[dict[str, Any]] = [
    # As the API answers: every field, plus ones RuleConfig does not have.
    {
        **rule.model_dump(),
        "cache_prefix_url": f"127.0.0.1:5000/{rule.prefix}",
        "created_at": "2026-11-28T17:00:00Z",
        "updated_at": None,
    }
    for rule in Settings().rules
] + [
    {
        "prefix": "ghcr/acme",
        "upstream": "https://ghcr.io",
        "upstream_namespace": "acme-corp",
        "cache_prefix_url": "127.0.0.1:5000/ghcr/acme",
    }
]


class RulesAdmin(AdminClient):
    """Answers `GET /rules` with RULES (or raises `error`), and records what it was asked."""

    asked: list[tuple[str, str, str]] = []
    error: AdminError | None = None

    def request(
        self, method: str, path: str, json: Any = None, params: Any = None
    ) -> dict[str, Any]:
        RulesAdmin.asked.append((self.settings.server, method, path))
        if RulesAdmin.error is not None:
            raise RulesAdmin.error
        assert (method, path) == ("GET", "/rules")
        return {"rules": RULES}


@pytest.fixture(autouse=True)
def fresh_admin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    RulesAdmin.asked = []
    RulesAdmin.error = None
    for name in ("PULLTHROUGH_SERVER", "PULLTHROUGH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(tmp_path / "no-client.yaml"))


def run(*args: str, stdin: bytes | None = None) -> Result:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """The command group, so `rewrite` is a subcommand as in `pullthrough`."""

    cli_rewrite.register(app)

    def factory(settings: ClientSettings) -> AdminClient:
        return RulesAdmin(settings)

    return CliRunner().invoke(app, ["rewrite", *args], input=stdin, obj=factory)


def sample(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copyfile(DATA / name, path)
    return path


def expected(name: str) -> bytes:
    return (DATA / f"{name}.expected").read_bytes()


def test_files_are_rewritten_in_place_keeping_their_mode(tmp_path: Path) -> None:
    manifest, values = sample(tmp_path, "kubernetes.yaml"), sample(tmp_path, "values.yaml")
    manifest.chmod(0o640)
    result = run(str(manifest), str(values), "--server", SERVER)
    assert result.exit_code == 0, result.output
    assert manifest.read_bytes() == expected("kubernetes.yaml")
    assert values.read_bytes() == expected("values.yaml")
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o640
    lines = result.stdout.splitlines()
    assert f"{manifest}:22: busybox:1.36 -> 127.0.0.1:5000/docker-hub/library/busybox:1.36" in lines
    assert f"{values}:51: redis:7.4 -> 127.0.0.1:5000/docker-hub/library/redis:7.4" in lines
    assert len(lines) == 8 + 7
    # What was left alone is said on stderr, one line each.
    assert f"{manifest}:38: left mcr.microsoft.com/dotnet/monitor:8.0 as is: no rule" in (
        result.stderr
    )
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    assert RulesAdmin.asked == [(SERVER, "GET", "/rules")]

    again = run(str(manifest), str(values), "--server", SERVER)
    assert again.exit_code == 0
    assert again.stdout == ""
    assert manifest.read_bytes() == expected("kubernetes.yaml")


def test_check_exits_3_when_something_would_change_and_writes_nothing(tmp_path: Path) -> None:
    compose = sample(tmp_path, "compose.yaml")
    before = compose.read_bytes()
    result = run("--check", str(compose), "--server", SERVER)
    assert result.exit_code == 3, result.output
    assert compose.read_bytes() == before
    assert f"{compose}:16: nginx:1.27-alpine -> " in result.stdout
    assert "5 image references would be rewritten" in result.stderr

    compose.write_bytes(expected("compose.yaml"))
    assert run("--check", str(compose), "--server", SERVER).exit_code == 0


def test_diff_prints_a_unified_diff_and_writes_nothing(tmp_path: Path) -> None:
    compose = sample(tmp_path, "compose.yaml")
    before = compose.read_bytes()
    result = run("--diff", str(compose), "--server", SERVER)
    assert result.exit_code == 0, result.output
    assert compose.read_bytes() == before
    assert result.stdout.startswith(f"--- a/{compose}\n+++ b/{compose}\n@@ ")
    assert '-    image: "nginx:1.27-alpine"    # the front door\n' in result.stdout
    assert (
        '+    image: "127.0.0.1:5000/docker-hub/library/nginx:1.27-alpine"    # the front door\n'
        in result.stdout
    )
    assert run("--diff", "--check", str(compose), "--server", SERVER).exit_code == 3


def test_stdin_to_stdout(tmp_path: Path) -> None:
    source = (DATA / "kubernetes.yaml").read_bytes().replace(b"\n", b"\r\n")
    result = run("-", "--server", SERVER, stdin=source)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected("kubernetes.yaml").replace(b"\n", b"\r\n")
    assert "<stdin>:22: busybox:1.36 -> " in result.stderr


def test_cache_host_defaults_to_the_server_and_can_be_given(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("image: nginx:1.27\n")
    assert run(str(path), "--server", "http://cache.internal:8080").exit_code == 0
    assert path.read_text() == "image: cache.internal:8080/docker-hub/library/nginx:1.27\n"
    path.write_text("image: nginx:1.27\n")
    assert run(str(path), "--server", SERVER, "--cache", "registry.example.com").exit_code == 0
    assert path.read_text() == "image: registry.example.com/docker-hub/library/nginx:1.27\n"


def test_a_symlink_keeps_pointing_at_the_rewritten_file(tmp_path: Path) -> None:
    target = sample(tmp_path, "compose.yaml")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert run(str(link), "--server", SERVER).exit_code == 0
    assert link.is_symlink()
    assert target.read_bytes() == expected("compose.yaml")


def test_a_bad_file_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    good = sample(tmp_path, "compose.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: b\n c: d: e\n")
    result = run(str(good), str(bad), "--server", SERVER)
    assert result.exit_code == 2
    assert good.read_bytes() == (DATA / "compose.yaml").read_bytes()
    assert result.stderr == (
        f"pullthrough: {bad}: not valid YAML (line 2, column 3): mapping values are not "
        "allowed here\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "pullthrough: cannot read missing.yaml: No such file or directory"),
        (["-", "-"], "pullthrough: - (stdin) can be given only once"),
        (["pod.yaml", "--cache", "http://x"], "pullthrough: --cache: 'http://x' is not a"),
        (["pod.yaml", "--server", "ftp://x"], "pullthrough: server 'ftp://x' is not an http(s)"),
        (["latin1.yaml"], "pullthrough: latin1.yaml is not UTF-8 text"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pod.yaml").write_text("image: nginx\n")
    (tmp_path / "latin1.yaml").write_bytes("image: caf\xe9\n".encode("latin-1"))
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert (tmp_path / "pod.yaml").read_text() == "image: nginx\n"


def test_a_refusing_server_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("image: nginx\n")
    RulesAdmin.error = AdminError("registry:Admin is needed on *", status=403, code="DENIED")
    result = run(str(path), "--server", SERVER)
    assert result.exit_code == 1
    assert result.stderr == "pullthrough: registry:Admin is needed on *\n"
    assert path.read_text() == "image: nginx\n"


def test_the_server_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULLTHROUGH_SERVER", "http://127.0.0.1:5999")
    path = tmp_path / "pod.yaml"
    path.write_text("image: nginx\n")
    assert run(str(path)).exit_code == 0
    assert RulesAdmin.asked == [("http://127.0.0.1:5999", "GET", "/rules")]
    assert path.read_text() == "image: 127.0.0.1:5999/docker-hub/library/nginx\n"
