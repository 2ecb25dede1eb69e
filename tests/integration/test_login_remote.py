"""`pullthrough login-password --server URL`: a user with nothing but their own credentials and
the server's address gets a login token, as with `aws ecr get-login-password`, and skopeo logs
in with it (`--password-stdin`) and pulls through the cache. No configuration file, no data
directory: the command runs in an empty directory with an empty environment."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry, require_binary
from tests.rig.server import pullthrough_binary
from tests.rig.skopeo import SKOPEO_TIMEOUT, verified_dir_digests

pytestmark = pytest.mark.integration

PASSWORD = "dora-Secret-1"


def as_user(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A command on a user's machine: an empty working directory and an environment holding
    nothing of the server's (no PULLTHROUGH_*, a home of its own)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(pullthrough_binary()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=home,
        env=env,
        check=False,
    )


def skopeo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("skopeo"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )


def claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


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
        settings={"auth": {"enabled": True, "login_token_ttl": "1h"}},
    )
    cache.server.command("users", "add", "dora", "--org", "acme", stdin=PASSWORD)
    return cache


@pytest.mark.parametrize("username", ["token", "AWS"])
def test_a_user_gets_a_login_token_with_only_their_password_and_skopeo_pulls_with_it(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path, username: str
) -> None:
    home = tmp_path / "dora"
    got = as_user(
        home,
        "login-password",
        "--server",
        cache.server.url,
        "--username",
        "dora",
        "--password-stdin",
        "--ttl",
        "10m",
        stdin=PASSWORD + "\n",
    )
    assert got.returncode == 0, got.stderr
    token = got.stdout.strip()
    assert claims(token)["sub"] == "dora" and claims(token)["purpose"] == "login"
    assert list(home.iterdir()) == []  # no data directory, no file of any kind

    authfile = tmp_path / "auth.json"
    login = skopeo(
        "login",
        f"--authfile={authfile}",
        "--tls-verify=false",
        "--username",
        username,
        "--password-stdin",
        cache.server.host,
        stdin=token,
    )
    assert login.returncode == 0, login.stderr
    image = fixture_images.oci_app
    inspected = skopeo(
        "inspect",
        "--raw",
        f"--authfile={authfile}",
        "--tls-verify=false",
        f"docker://{cache.ref(image.reference)}",
    )
    assert inspected.returncode == 0, inspected.stderr
    copied = skopeo(
        "--insecure-policy",
        "copy",
        f"--authfile={authfile}",
        "--src-tls-verify=false",
        f"docker://{cache.ref(image.reference)}",
        f"dir:{tmp_path / 'copy'}",
    )
    assert copied.returncode == 0, copied.stderr
    digests = verified_dir_digests(tmp_path / "copy")
    assert image.digest in digests  # the manifest, byte for byte as upstream's
    assert {blob.digest for blob in image.blobs} <= digests


def test_the_client_file_api_key_gets_a_token_and_a_wrong_password_is_one_line_and_exit_1(
    cache: Cache, tmp_path: Path
) -> None:
    key = cache.server.command("apikeys", "create", "ci").strip()
    home = tmp_path / "ci"
    client_file = home / ".config" / "pullthrough" / "client.yaml"
    client_file.parent.mkdir(parents=True)
    client_file.write_text(f"server: {cache.server.url}\ntoken: ci:{key}\n")
    got = as_user(home, "login-password")
    assert got.returncode == 0, got.stderr
    assert claims(got.stdout.strip())["sub"] == "ci"

    wrong = as_user(
        tmp_path / "mallory",
        "login-password",
        "--server",
        cache.server.url,
        "-u",
        "dora",
        "--password-stdin",
        stdin="not-her-password\n",
    )
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert wrong.stderr.count("\n") == 1, wrong.stderr
    assert wrong.stderr.startswith("pullthrough: ")
    assert "refused the login of 'dora'" in wrong.stderr

    too_long = as_user(
        home, "login-password", "-u", "dora", "--password-stdin", "--ttl", "2h", stdin=PASSWORD
    )
    assert too_long.returncode == 1
    assert "auth.login_token_ttl" in too_long.stderr

    # A login token cannot renew itself: it would never expire.
    token = got.stdout.strip()
    client_file.write_text(f"server: {cache.server.url}\ntoken: {token}\n")
    renewed = as_user(home, "login-password")
    assert renewed.returncode == 2
    assert "a login token cannot get another" in renewed.stderr
    asked = httpx.post(
        cache.url("/api/v1/login-token"),
        json={},
        headers={"Authorization": "Basic " + base64.b64encode(f"token:{token}".encode()).decode()},
        timeout=30,
    )
    assert asked.status_code == 403
    assert "a login token cannot get a login token" in asked.json()["message"]


def test_local_mode_with_config_still_mints_any_principals_token(cache: Cache) -> None:
    token = cache.server.command("login-password", "--principal", "dora", "--ttl", "1m").strip()
    assert claims(token)["sub"] == "dora"
    response = cache.get(
        "/v2/",
        headers={"Authorization": "Basic " + base64.b64encode(f"AWS:{token}".encode()).decode()},
    )
    assert response.status_code == 200
