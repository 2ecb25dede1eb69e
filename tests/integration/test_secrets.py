"""Stored upstream credentials: a rule pulls from Basic-auth and token-auth upstreams with a
secret from `pullthrough secrets put` (through the admin API), a rotation takes effect without a
restart, and no secret value reaches the log (at debug level), an API response or the database
file in clear text."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import pullthrough_cli
from tests.integration.cache_setup import SECRET, Cache, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer
from tests.rig.skopeo import skopeo_copy, verified_dir_digests
from tests.rig.token_issuer import TokenIssuer

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "wrong-Pa55-zq81x"
# How long a worker may keep using the credential it looked up last (LOOKUP_TTL), with slack.
ROTATION_DEADLINE = 10.0


class Responses:
    """Every HTTP answer the test gets from the cache, to grep for secrets afterwards."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.seen: list[bytes] = []

    def manifest(self, image: PushedImage) -> httpx.Response:
        response = self.cache.get(
            f"/v2/up/{image.repo}/manifests/{image.tag}", headers={"Accept": UPSTREAM_ACCEPT}
        )
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.seen.append(headers.encode() + b"\n\n" + response.content)
        return response


def secrets_cli(
    server: PullthroughServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`pullthrough secrets …` against the server's admin API."""
    return pullthrough_cli(server, "secrets", *args, stdin=stdin)


def put_secret(server: PullthroughServer, value: dict[str, str]) -> None:
    result = secrets_cli(server, "put", SECRET, stdin=json.dumps(value))
    assert result.returncode == 0, result.stderr


def start_with_stored_secret(
    counting_proxy: MakeProxy, pullthrough_server: StartPullthrough, upstream: UpstreamRegistry
) -> Cache:
    """A cache whose rule names SECRET, which is nowhere yet: the server starts and says so."""
    # negative_ttl 0: a refused login is a 404 the cache would otherwise remember for 30s,
    # hiding the rotation this test is about.
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        settings={"log_level": "debug"},
        credential_in_env=False,
        negative_ttl=0,
    )
    warnings = [
        json.loads(line)
        for line in cache.server.log_text().splitlines()
        if line.startswith("{") and f"pullthrough secrets put {SECRET}" in line
    ]
    assert [w["level"] for w in warnings] == ["warning"], cache.server.log_tail()
    return cache


def copy_and_verify(cache: Cache, image: PushedImage, dest: Path) -> None:
    result = skopeo_copy(cache.ref(image.reference), dest)
    assert result.returncode == 0, result.stderr
    assert verified_dir_digests(dest) == image.all_digests()
    assert (dest / "manifest.json").read_bytes() == image.manifest


def assert_no_secret_anywhere(cache: Cache, responses: Responses, secrets: list[str]) -> None:
    """Must show 4: grep the debug log, every response and the database files."""
    username = cache.upstream.username
    assert username is not None
    needles = [s.encode() for s in secrets]
    # An Authorization header in a log would carry the password base64-encoded.
    needles += [base64.b64encode(f"{username}:{s}".encode()) for s in secrets]
    listing = secrets_cli(cache.server, "list", "--output", "json")
    assert listing.returncode == 0, listing.stderr
    assert [entry["name"] for entry in json.loads(listing.stdout)["secrets"]] == [SECRET]
    cache.server.stop()  # checkpoints the WAL into the database file
    log = cache.server.log_text().encode()
    assert "debug" in cache.server.log_levels()  # the log really is at debug level
    database = [p for p in cache.server.data_dir.glob("metadata.sqlite*") if p.is_file()]
    assert database
    for needle in needles:
        assert needle not in log, f"a secret value is in the server log: {needle!r}"
        assert needle not in listing.stdout.encode()
        for seen in responses.seen:
            assert needle not in seen, f"a secret value is in a response: {seen[:300]!r}"
        for path in database:
            assert needle not in path.read_bytes(), f"a secret value is in {path}"


def test_basic_auth_upstream_with_a_stored_secret_and_rotation_without_restart(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    username, password = upstream.credentials
    cache = start_with_stored_secret(counting_proxy, pullthrough_server, upstream)
    responses = Responses(cache)
    image = fixture_images.busybox

    put_secret(cache.server, {"username": username, "accessToken": WRONG_PASSWORD})
    refused = responses.manifest(image)
    assert refused.status_code == 404, refused.text
    message = refused.json()["errors"][0]["message"]
    assert f"the rule credential (user {username!r}) may not pull it" in message
    assert skopeo_copy(cache.ref(image.reference), tmp_path / "refused").returncode != 0

    # The convenient form: username as an option, the token alone on stdin.
    result = secrets_cli(cache.server, "put", SECRET, "--username", username, stdin=password)
    assert result.returncode == 0, result.stderr
    assert "replaced secret" in result.stdout
    wait_for(
        lambda: responses.manifest(image).status_code == 200,
        ROTATION_DEADLINE,
        "the rotated secret to be used",
    )
    copy_and_verify(cache, image, tmp_path / "copy")
    assert cache.server.running  # never restarted

    assert_no_secret_anywhere(cache, responses, [password, WRONG_PASSWORD])


def test_token_auth_upstream_with_a_stored_secret_and_rotation_without_restart(
    upstreams: dict[AuthMode, UpstreamRegistry],
    token_issuer: TokenIssuer,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_with_stored_secret(counting_proxy, pullthrough_server, upstreams["token"])
    responses = Responses(cache)
    image = fixture_images.oci_app
    token_issuer.reset()

    put_secret(cache.server, {"username": "someone-else", "password": WRONG_PASSWORD})
    refused = responses.manifest(image)
    assert refused.status_code == 403, refused.text
    assert "refused the rule credential (user 'someone-else')" in refused.text
    assert [(r.username, r.status) for r in token_issuer.requests] == [("someone-else", 401)]

    put_secret(
        cache.server, {"username": token_issuer.username, "accessToken": token_issuer.password}
    )
    wait_for(
        lambda: responses.manifest(image).status_code == 200,
        ROTATION_DEADLINE,
        "the rotated secret to be used",
    )
    logins = [(r.username, r.status) for r in token_issuer.requests]
    assert logins[-1] == (token_issuer.username, 200)
    assert set(logins) == {("someone-else", 401), (token_issuer.username, 200)}
    copy_and_verify(cache, image, tmp_path / "copy")
    assert cache.server.running

    assert_no_secret_anywhere(cache, responses, [token_issuer.password, WRONG_PASSWORD])


def test_deleting_a_secret_falls_back_to_the_environment(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    username, _ = upstream.credentials
    # The environment has the right credential; a stored wrong one wins over it.
    cache = start_cache(counting_proxy, pullthrough_server, upstream, negative_ttl=0)
    responses = Responses(cache)
    put_secret(cache.server, {"username": username, "accessToken": WRONG_PASSWORD})
    wait_for(
        lambda: responses.manifest(fixture_images.busybox).status_code == 404,
        ROTATION_DEADLINE,
        "the stored secret to win over the environment",
    )

    deleted = secrets_cli(cache.server, "delete", SECRET)
    assert deleted.returncode == 0, deleted.stderr
    wait_for(
        lambda: responses.manifest(fixture_images.busybox).status_code == 200,
        ROTATION_DEADLINE,
        "the environment's credential to be used again",
    )
    missing = secrets_cli(cache.server, "delete", SECRET)
    assert missing.returncode == 1
    assert f"no secret named {SECRET!r}" in missing.stderr
