"""No secret reaches a server's log, at debug level, through everything that handles one:
password logins, token requests with Basic auth (right and wrong), API keys on the admin API and
/metrics, login tokens, a stored upstream credential put, used and rotated, and the registry
tokens clients pull with."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok
from tests.integration.cache_setup import SECRET, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.oci_build import OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.secret_watch import SecretWatch, register_secret
from tests.rig.skopeo import skopeo_copy

pytestmark = pytest.mark.integration

ALICE_PASSWORD = "alice-Log-Secret-7731"
WRONG_PASSWORD = "not-alice-Pa55-9921"
WRONG_UPSTREAM_TOKEN = "wrong-upstream-Tok-5514"
ACCEPT = {
    "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json"
}


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def test_no_secret_in_the_log_of_logins_tokens_keys_and_upstream_credentials(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    username, password = upstream.credentials
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        settings={"auth": {"enabled": True}, "log_level": "debug", "workers": 2},
        credential_in_env=False,
        eager_fill=False,
        negative_ttl=0,
    )
    server = cache.server
    watch = SecretWatch()

    def secret(value: str, what: str) -> str:
        watch.secret(value, what)
        register_secret(value, what)  # and the session's check
        return value

    secret(ALICE_PASSWORD, "alice's password")
    secret(WRONG_PASSWORD, "a wrong password")
    secret(password, "the upstream's password")
    secret(WRONG_UPSTREAM_TOKEN, "a wrong upstream credential")
    server.command("users", "add", "alice", "--org", "acme", stdin=ALICE_PASSWORD)
    ops_key = secret(server.command("apikeys", "create", "ops").strip(), "the ops API key")
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"User": ["alice"]},
                        "Action": ["registry:Pull", "registry:ImportUpstream"],
                        "Resource": "repository/up/*",
                    },
                    {
                        "Effect": "Allow",
                        "Principal": {"ApiKey": ["ops"]},
                        "Action": "registry:Admin",
                        "Resource": "*",
                    },
                ],
            }
        )
    )
    server.command("policy", "put", "-f", str(policy))
    ops = f"ops:{ops_key}"
    wait_for(
        lambda: httpx.get(cache.url("/metrics"), headers=basic("ops", ops_key)).status_code == 200,
        10,
        "the policy to apply",
    )

    # The upstream credential: first a wrong one, then rotated to the right one.
    admin_ok(
        server,
        "secrets",
        "put",
        SECRET,
        token=ops,
        stdin=json.dumps({"username": username, "accessToken": WRONG_UPSTREAM_TOKEN}),
    )
    image = fixture_images.busybox
    scope = f"repository:up/{image.repo}:pull"
    registry_token = secret(
        httpx.get(
            cache.url("/token"),
            params={"service": "pullthrough", "scope": scope},
            headers=basic("alice", ALICE_PASSWORD),
        ).json()["token"],
        "a registry token",
    )
    bearer = {"Authorization": f"Bearer {registry_token}", **ACCEPT}
    refused = httpx.get(cache.url(f"/v2/up/{image.repo}/manifests/{image.tag}"), headers=bearer)
    assert refused.status_code in (401, 404), refused.text
    admin_ok(
        server,
        "secrets",
        "put",
        SECRET,
        token=ops,
        stdin=json.dumps({"username": username, "accessToken": password}),
    )

    def pulled() -> bool:
        response = httpx.get(
            cache.url(f"/v2/up/{image.repo}/manifests/{image.tag}"), headers=bearer, timeout=60
        )
        return response.status_code == 200

    wait_for(pulled, 20, "the rotated upstream credential to be used")

    # A wrong password, on /token (GET and POST) and on the admin API.
    wrong = httpx.get(
        cache.url("/token"),
        params={"service": "pullthrough", "scope": scope, "account": "alice"},
        headers=basic("alice", WRONG_PASSWORD),
    )
    assert wrong.status_code == 401
    posted = httpx.post(
        cache.url("/token"),
        data={
            "grant_type": "password",
            "service": "pullthrough",
            "scope": scope,
            "username": "alice",
            "password": WRONG_PASSWORD,
        },
    )
    assert posted.status_code in (400, 401), posted.text
    assert (
        httpx.get(cache.url("/api/v1/rules"), headers=basic("ops", WRONG_PASSWORD)).status_code
        == 401
    )
    assert (
        httpx.get(cache.url("/metrics"), headers=basic("alice", WRONG_PASSWORD)).status_code == 401
    )

    # A login token, used by skopeo as a docker login, and the API key on the admin API.
    login = secret(
        server.command("login-password", "--principal", "alice").strip(), "a login token"
    )
    copied = skopeo_copy(cache.ref(image.reference), tmp_path / "copy", src_creds=("token", login))
    assert copied.returncode == 0, copied.stderr
    assert httpx.get(cache.url("/api/v1/rules"), headers=basic("ops", ops_key)).status_code == 200

    server.stop()  # every worker's queued lines written
    entries = server.log_entries()
    assert "debug" in {e["level"] for e in entries}  # the log really is at debug level
    # and has the upstream requests
    assert "pullthrough.upstream.requests" in {e["logger"] for e in entries}
    assert watch.leaks([server.log_path]) == []
