"""Who may pull what: logins, tokens and the registry policy, checked through the real HTTP
token flow and with skopeo."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest

from pullthrough.storage.layout import DataLayout
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.oci_build import OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy

pytestmark = pytest.mark.integration

ACCEPT = {
    "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json"
}
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2", "carol": "carol-Secret-3"}

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {  # everyone in org acme may read cached team images
            "Sid": "AcmeReadsTeam",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "registry:Pull",
            "Resource": "repository/up/team/*",
            "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme"}},
        },
        {  # the dev group may read and import anything under up/
            "Sid": "DevImports",
            "Effect": "Allow",
            "Principal": {"Group": ["dev"]},
            "Action": ["registry:Pull", "registry:ImportUpstream"],
            "Resource": "repository/up/*",
        },
        {  # but nobody touches the large image
            "Sid": "NobodyLarge",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "registry:*",
            "Resource": "repository/up/team/large",
        },
        {
            "Sid": "AliceLists",
            "Effect": "Allow",
            "Principal": {"User": ["alice"]},
            "Action": "registry:ListRepositories",
            "Resource": "*",
        },
    ],
}


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> Cache:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}, "log_level": "debug"},
        # A manifest pulled alone leaves its blobs uncached, as refusals to principals that may
        # not import need (tests/integration/test_eager_fill.py has eager fill with access).
        eager_fill=False,
    )
    cache.server.command(
        "users", "add", "alice", "--org", "acme", "--group", "dev", stdin=PASSWORDS["alice"]
    )
    cache.server.command("users", "add", "bob", "--org", "acme", stdin=PASSWORDS["bob"])
    cache.server.command(
        "users",
        "add",
        "carol",
        "--org",
        "globex",
        "--group",
        "dev",
        stdin=PASSWORDS["carol"],
    )
    PASSWORDS["ci"] = cache.server.command("apikeys", "create", "ci", "--org", "acme").strip()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    # With auth on, nobody may use the admin API until a policy grants registry:Admin: the
    # first policy goes into the data directory (--config), as an operator bootstraps.
    cache.server.command("policy", "put", "-f", str(policy))
    time.sleep(1.1)  # the server re-reads the policy at most once a second
    return cache


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()


def token(cache: Cache, user: str, scope: str) -> str:
    response = cache.get(
        "/token",
        params={"service": "pullthrough", "scope": scope},
        headers={"Authorization": basic(user)},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def pull_manifest(cache: Cache, user: str, repo: str, reference: str) -> httpx.Response:
    bearer = token(cache, user, f"repository:up/{repo}:pull")
    return cache.get(
        f"/v2/up/{repo}/manifests/{reference}",
        headers={**ACCEPT, "Authorization": f"Bearer {bearer}"},
    )


def test_anonymous_clients_are_challenged(cache: Cache) -> None:
    base = cache.get("/v2/")
    assert base.status_code == 401
    challenge = base.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{cache.server.url}/token"' in challenge
    assert 'service="pullthrough"' in challenge
    repo = cache.get("/v2/up/team/oci-app/manifests/v1")
    assert repo.status_code == 401
    assert 'scope="repository:up/team/oci-app:pull"' in repo.headers["WWW-Authenticate"]
    assert repo.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert cache.get("/token").status_code == 401
    wrong = cache.get(
        "/v2/",
        headers={"Authorization": "Basic " + base64.b64encode(b"alice:not-her-password").decode()},
    )
    assert wrong.status_code == 401
    assert cache.get("/v2/", headers={"Authorization": basic("alice")}).status_code == 200


# (user, repository, reference, cached beforehand?, expected status, words in the error)
MATRIX = [
    ("alice", "team/oci-app", "v1", False, 200, ""),  # dev: imports
    ("bob", "team/oci-app", "v1", True, 200, ""),  # acme: reads cached team images
    ("bob", "team/many-layers", "v1", False, 403, "registry:ImportUpstream"),
    ("bob", "library/busybox", "latest", True, 403, "registry:Pull"),  # outside team/
    ("ci", "team/oci-app", "v1", True, 200, ""),  # an API key of acme
    ("ci", "team/multi", "latest", False, 403, "registry:ImportUpstream"),
    ("carol", "team/multi", "latest", False, 200, ""),  # globex but dev: imports
    ("carol", "library/busybox", "latest", False, 200, ""),
    ("alice", "team/large", "v1", False, 403, "NobodyLarge"),  # Deny beats Allow
    ("carol", "team/large", "v1", False, 403, "NobodyLarge"),
]


def test_policy_matrix_through_the_token_flow(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    # Cached beforehand means the whole image: a principal that may not import is refused an
    # image whose layers are not all cached (test_refusal_reasons.py).
    warmed = {(repo, ref) for _, repo, ref, cached, _, _ in MATRIX if cached}
    alice = ("alice", PASSWORDS["alice"])
    for repo, ref in sorted(warmed):
        dest = tmp_path / repo.replace("/", "-")
        copied = skopeo_copy(cache.ref(f"{repo}:{ref}"), dest, src_creds=alice)
        assert copied.returncode == 0, copied.stderr
    for image in (fixture_images.oci_app, fixture_images.busybox):
        for blob in image.blobs:
            cache.committed(blob.digest)
    for user, repo, ref, _cached, status, words in MATRIX:
        response = pull_manifest(cache, user, repo, ref)
        cell = f"{user} {repo}:{ref}"
        assert response.status_code == status, (cell, response.text)
        if status == 403:
            error = response.json()["errors"][0]
            assert error["code"] == "DENIED", cell
            assert words in error["message"], (cell, error["message"])
            assert user in error["message"], (cell, error["message"])
            assert f"up/{repo}" in error["message"], (cell, error["message"])

    catalog_token = token(cache, "alice", "registry:catalog:*")
    listed = cache.get("/v2/_catalog", headers={"Authorization": f"Bearer {catalog_token}"})
    assert listed.status_code == 200
    assert "up/team/oci-app" in listed.json()["repositories"]
    bob_catalog = token(cache, "bob", "registry:catalog:*")
    refused = cache.get("/v2/_catalog", headers={"Authorization": f"Bearer {bob_catalog}"})
    assert refused.status_code == 403
    assert "registry:ListRepositories" in refused.json()["errors"][0]["message"]


def test_token_scopes_are_trimmed_to_what_the_policy_grants(cache: Cache) -> None:
    response = cache.get(
        "/token",
        params=[
            ("service", "pullthrough"),
            ("scope", "repository:up/team/oci-app:pull,push"),
            ("scope", "repository:up/library/busybox:pull"),
        ],
        headers={"Authorization": basic("bob")},
    )
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == "bob"
    assert claims["access"] == [
        {"type": "repository", "name": "up/team/oci-app", "actions": ["pull"]}
    ]


def test_pull_only_principal_reads_cached_and_is_told_what_is_missing_for_uncached(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    alice = ("alice", PASSWORDS["alice"])
    bob = ("bob", PASSWORDS["bob"])
    warm = skopeo_copy(cache.ref("team/oci-app:v1"), tmp_path / "alice", src_creds=alice)
    assert warm.returncode == 0, warm.stderr
    cached = skopeo_copy(cache.ref("team/oci-app:v1"), tmp_path / "bob", src_creds=bob)
    assert cached.returncode == 0, cached.stderr
    cache.proxy.reset()
    uncached = skopeo_copy(cache.ref("team/many-layers:v1"), tmp_path / "bob2", src_creds=bob)
    assert uncached.returncode != 0
    assert cache.proxy.requests == []  # refused before anything went upstream
    response = pull_manifest(cache, "bob", "team/many-layers", "v1")
    message = response.json()["errors"][0]["message"]
    assert response.status_code == 403
    assert "registry:ImportUpstream" in message
    assert "'bob'" in message

    outsider = skopeo_copy(cache.ref("library/busybox:latest"), tmp_path / "x", src_creds=bob)
    assert outsider.returncode != 0
    allowed = skopeo_copy(
        cache.ref("library/busybox:latest"),
        tmp_path / "carol",
        src_creds=("carol", PASSWORDS["carol"]),
    )
    assert allowed.returncode == 0, allowed.stderr


def test_login_password_token_works_as_a_docker_login(cache: Cache, tmp_path: Path) -> None:
    login = cache.server.command("login-password", "--principal", "alice").strip()
    copied = skopeo_copy(
        cache.ref("team/oci-app:v1"), tmp_path / "copy", src_creds=("token", login)
    )
    assert copied.returncode == 0, copied.stderr


def test_bad_tokens_are_refused(cache: Cache) -> None:
    good = token(cache, "alice", "repository:up/team/oci-app:pull")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def encode(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    tampered = ".".join([header, encode({**claims, "sub": "mallory", "org": "acme"}), signature])
    unsigned = ".".join([encode({"alg": "none", "typ": "JWT"}), payload, ""])
    expired = ".".join([header, encode({**claims, "exp": int(time.time()) - 10}), signature])
    key_file = DataLayout(cache.server.data_dir).token_key_file
    key = bytes.fromhex(key_file.read_text())
    other_audience = jwt.encode({**claims, "aud": "another-registry"}, key, algorithm="HS256")
    really_expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, key, algorithm="HS256")
    for name, bad in [
        ("tampered", tampered),
        ("alg none", unsigned),
        ("expired", expired),
        ("wrong audience", other_audience),
        ("expired, signed", really_expired),
        ("garbage", "not-a-token"),
    ]:
        response = cache.get(
            "/v2/up/team/oci-app/manifests/v1", headers={**ACCEPT, "Authorization": f"Bearer {bad}"}
        )
        assert response.status_code == 401, name
        assert response.json()["errors"][0]["code"] == "UNAUTHORIZED", name
    ok = cache.get(
        "/v2/up/team/oci-app/manifests/v1", headers={**ACCEPT, "Authorization": f"Bearer {good}"}
    )
    assert ok.status_code == 200


def test_passwords_and_keys_never_appear_in_logs_responses_or_the_database(
    cache: Cache, tmp_path: Path
) -> None:
    seen: list[bytes] = []
    for user in PASSWORDS:
        for response in (
            cache.get("/v2/", headers={"Authorization": basic(user)}),
            cache.get(
                "/token",
                params={"scope": "repository:up/team/oci-app:pull"},
                headers={"Authorization": basic(user)},
            ),
            pull_manifest(cache, user, "team/oci-app", "v1"),
        ):
            seen.append(response.content + str(response.headers).encode())
    seen.append(cache.server.command("users", "list").encode())
    log = cache.server.log_text().encode()
    assert "debug" in cache.server.log_levels()
    database = b"".join(p.read_bytes() for p in cache.server.data_dir.glob("metadata.sqlite*"))
    for secret in PASSWORDS.values():
        for place, content in (
            ("log", log),
            ("database", database),
            *(("response", r) for r in seen),
        ):
            assert secret.encode() not in content, f"{secret[:4]}… found in the {place}"
