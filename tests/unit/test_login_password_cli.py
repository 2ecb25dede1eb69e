"""`login-password --server`: which credentials it sends, what it prints, and every refusal as
one line with exit 1 (the server said no) or 2 (the command line is wrong)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from pullthrough.cli import access as cli_access
from pullthrough.client.admin import AdminClient, ClientSettings
from tests.unit.fake_admin import MockAdminClient

SERVER = "http://cache.test:5000"
TOKEN = "eyJ.login.token"


class LoginServer:
    """`POST /api/v1/login-token`, accepting one password."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def client(self, settings: ClientSettings) -> AdminClient:
        return MockAdminClient(settings, httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert (request.method, request.url.path) == ("POST", "/api/v1/login-token")
        if request.headers.get("Authorization") != basic("dora", "pw:with:colons"):
            message = "wrong username or password for 'dora'"
            return httpx.Response(401, json={"code": "UNAUTHORIZED", "message": message})
        return httpx.Response(200, json={"token": TOKEN, "username": "token"})


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULLTHROUGH_CLIENT_CONFIG", str(tmp_path / "no-client.yaml"))
    for name in ("PULLTHROUGH_SERVER", "PULLTHROUGH_TOKEN", "PULLTHROUGH_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def run(server: LoginServer, *args: str, stdin: str | None = None) -> Result:
    app = typer.Typer()
    cli_access.register(app)
    return CliRunner().invoke(app, ["login-password", *args], input=stdin, obj=server.client)


def one_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pullthrough: "), result.stderr
    return lines[0]


def test_the_password_from_stdin_buys_a_token_printed_alone() -> None:
    server = LoginServer()
    result = run(
        server,
        "--server",
        SERVER,
        "-u",
        "dora",
        "--password-stdin",
        "--ttl",
        "5m",
        stdin="pw:with:colons\n",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == TOKEN + "\n"
    (request,) = server.requests
    assert json.loads(request.content) == {"ttl": "5m"}


def test_a_wrong_password_is_one_line_and_exit_1() -> None:
    result = run(LoginServer(), "-s", SERVER, "-u", "dora", "--password-stdin", stdin="nope\n")
    assert "refused the login of 'dora'" in one_line(result, 1)


def test_an_api_key_from_the_token_option_is_sent_as_basic() -> None:
    server = LoginServer()
    result = run(server, "-s", SERVER, "--token", "dora:pw:with:colons")
    assert result.exit_code == 0, result.stderr
    assert json.loads(server.requests[0].content) == {}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-s", SERVER, "--config", "x.yaml", "-u", "dora"), "not both"),
        (("-s", SERVER), "--principal NAME"),  # no credentials at all
        (("-s", SERVER, "--token", "eyJ.a.login-token"), "a login token cannot get another"),
        (("-s", SERVER, "--password-stdin"), "needs --principal"),
        (("--config", "x.yaml"), "--config needs --principal"),
    ],
)
def test_usage_errors_are_exit_2_before_anything_is_sent(args: tuple[str, ...], words: str) -> None:
    server = LoginServer()
    assert words in one_line(run(server, *args, stdin=""), 2)
    assert server.requests == []
