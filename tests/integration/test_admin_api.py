"""The admin REST API as a user sees it, against a real server in front of a real upstream:
rules changed over HTTP serve pulls at once (in every worker), secrets go in and never come
out, bad requests are 4xx that name the field, auth guards it, and the listings and statistics
say what a real client's pulls did."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.oci.mediatypes import OCI_INDEX, OCI_MANIFEST, UPSTREAM_ACCEPT
from pullthrough.storage.layout import DataLayout
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import PREFIX, SECRET, Cache, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration

# Each worker re-reads the rules at most once a second; a change is everywhere within 2 s.
RULE_DEADLINE = 2.0
# How long a worker may keep a looked-up secret (LOOKUP_TTL), with slack.
SECRET_DEADLINE = 10.0
# Pull times are written every 5 s, statistics every 2 s.
FLUSH_DEADLINE = 20.0


def api(cache: Cache, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, cache.url(f"/api/v1{path}"), timeout=60, **kwargs)


def segment(name: str) -> str:
    return name.replace("/", "%2F")


def manifest(cache: Cache, path: str, **headers: str) -> httpx.Response:
    return cache.get(path, headers={"Accept": UPSTREAM_ACCEPT, **headers})


def iso(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 20 and value.endswith("Z") and value[10] == "T"


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    # A cold pull's blobs are misses as the client reads them: no eager fill ahead of it.
    return start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"], eager_fill=False)


# -- rules ------------------------------------------------------------------------------------


def test_a_rule_made_over_http_serves_pulls_without_a_restart(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    pid = cache.server.pid
    image = fixture_images.oci_app
    rule = {
        "prefix": "mirror/team",
        "upstream": cache.proxy.url + "/",
        "tag_ttl": "1m",
        "implicit_namespace": "library",
    }
    created = api(cache, "POST", "/rules", json=rule)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["prefix"] == "mirror/team"
    assert body["upstream"] == cache.proxy.url  # normalized: no trailing slash
    assert body["tag_ttl"] == 60.0
    assert (body["default"], body["mirror_of"], body["negative_ttl"]) == (False, None, 30.0)
    assert body["cache_prefix_url"] == f"{cache.server.host}/mirror/team"
    assert iso(body["created_at"]) and body["created_at"] == body["updated_at"]

    listed = api(cache, "GET", "/rules").json()["rules"]
    assert [r["prefix"] for r in listed] == ["mirror/team", PREFIX]
    assert api(cache, "GET", "/rules/mirror%2Fteam").json() == body

    # A real client pulls through the new prefix at once.
    dest = tmp_path / "copy"
    copied = skopeo_copy(f"{body['cache_prefix_url']}/{image.reference}", dest)
    assert copied.returncode == 0, copied.stderr
    assert verified_dir_digests(dest) == image.all_digests()
    assert (dest / "manifest.json").read_bytes() == image.manifest

    replaced = api(
        cache, "PUT", "/rules/mirror%2Fteam", json={"upstream": cache.proxy.url, "tag_ttl": 0}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["tag_ttl"] == 0.0
    assert replaced.json()["implicit_namespace"] is None  # replaced, not merged
    assert replaced.json()["created_at"] == body["created_at"]

    made = api(cache, "PUT", "/rules/other", json={"prefix": "other", "upstream": cache.proxy.url})
    assert made.status_code == 201, made.text

    again = api(cache, "POST", "/rules", json=rule)
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    assert "mirror/team" in again.json()["message"]
    second_default = api(
        cache, "POST", "/rules", json={"prefix": "x", "upstream": cache.proxy.url, "default": True}
    )
    assert second_default.status_code == 409
    assert f"{PREFIX!r} is already the default" in second_default.json()["message"]

    assert api(cache, "DELETE", "/rules/mirror%2Fteam").status_code == 204
    gone = api(cache, "GET", "/rules/mirror%2Fteam")
    assert gone.status_code == 404
    assert gone.json()["code"] == "NOT_FOUND"
    assert api(cache, "DELETE", "/rules/mirror%2Fteam").status_code == 404
    # The name now goes to the default rule, whose upstream has no such repository.
    pulled = manifest(cache, f"/v2/mirror/team/{image.repo}/manifests/{image.tag}")
    assert pulled.status_code == 404
    assert cache.server.pid == pid and cache.server.running


def _pull_from_fresh_connections(cache: Cache, path: str, count: int) -> tuple[list[int], set[str]]:
    statuses, ids = [], set()
    for _ in range(count):
        request_id = uuid.uuid4().hex[:16]
        ids.add(request_id)
        # A new connection each time, so the kernel spreads them over the workers.
        statuses.append(manifest(cache, path, **{"X-Request-Id": request_id}).status_code)
    return statuses, ids


def test_a_rule_change_reaches_every_worker_within_two_seconds(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], settings={"workers": 2}
    )
    image = fixture_images.busybox
    path = f"/v2/fresh/{image.repo}/manifests/{image.tag}"
    assert manifest(cache, path).status_code == 404  # no such rule yet: `up` has no fresh/…

    started = time.monotonic()
    created = api(cache, "POST", "/rules", json={"prefix": "fresh", "upstream": cache.proxy.url})
    assert created.status_code == 201, created.text
    time.sleep(max(0.0, started + RULE_DEADLINE - time.monotonic()))
    statuses, ids = _pull_from_fresh_connections(cache, path, 30)
    assert statuses == [200] * 30
    wait_for(lambda: len(cache.server.served_by(ids)) == 30, 10, "the requests' log lines")
    assert len(set(cache.server.served_by(ids).values())) == 2  # both workers answered

    started = time.monotonic()
    assert api(cache, "DELETE", "/rules/fresh").status_code == 204
    time.sleep(max(0.0, started + RULE_DEADLINE - time.monotonic()))
    statuses, ids = _pull_from_fresh_connections(cache, path, 30)
    assert statuses == [404] * 30
    wait_for(lambda: len(cache.server.served_by(ids)) == 30, 10, "the requests' log lines")
    assert len(set(cache.server.served_by(ids).values())) == 2


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_go_in_and_their_values_never_come_out(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    upstream = upstreams["basic"]
    assert upstream.credentials is not None
    username, password = upstream.credentials
    wrong = "wrong-Pa55-qx81z"
    # The rule names SECRET, which is stored nowhere yet; negative_ttl 0 so a refused pull is
    # not remembered past the fix.
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        settings={"log_level": "debug"},
        credential_in_env=False,
        negative_ttl=0,
    )
    seen: list[httpx.Response] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = api(cache, method, path, **kwargs)
        seen.append(response)
        return response

    stored = call("PUT", f"/secrets/{SECRET}", json={"username": username, "accessToken": wrong})
    assert stored.status_code == 201, stored.text
    assert set(stored.json()) == {"name", "created_at", "updated_at"}
    assert stored.json()["name"] == SECRET
    busybox = fixture_images.busybox
    refused = manifest(cache, f"/v2/{PREFIX}/{busybox.repo}/manifests/{busybox.tag}")
    assert refused.status_code == 404, refused.text

    rotated = call("PUT", f"/secrets/{SECRET}", json={"username": username, "password": password})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["created_at"] == stored.json()["created_at"]
    wait_for(
        lambda: (
            skopeo_copy(cache.ref(fixture_images.busybox.reference), tmp_path / "c").returncode == 0
        ),
        SECRET_DEADLINE,
        "the rotated secret to be used",
    )

    assert call("GET", "/secrets").json() == {"secrets": [rotated.json()]}
    assert call("GET", f"/secrets/{SECRET}").json() == rotated.json()
    checks = [
        ({"username": username, "accessToken": password}, True),
        ({"username": username, "password": password}, True),
        ({"username": username, "accessToken": wrong}, False),
        ({"username": "someone-else", "accessToken": password}, False),
    ]
    for candidate, matches in checks:
        checked = call("POST", "/secret-checks", json={"name": SECRET, **candidate})
        assert checked.status_code == 200, checked.text
        assert checked.json() == {"name": SECRET, "matches": matches}
    unknown = call(
        "POST", "/secret-checks", json={"name": "nope", "username": "u", "password": "p"}
    )
    assert unknown.status_code == 404
    both = call(
        "PUT",
        f"/secrets/{SECRET}",
        json={"username": username, "password": "a", "accessToken": "b"},
    )
    assert both.status_code == 400
    assert both.json()["fields"][0]["field"] == "accessToken"

    assert call("DELETE", f"/secrets/{SECRET}").status_code == 204
    assert call("GET", f"/secrets/{SECRET}").status_code == 404
    assert call("GET", "/secrets").json() == {"secrets": []}

    cache.server.stop()  # the log is complete
    log = cache.server.log_text()
    assert "debug" in cache.server.log_levels()
    for value in (password, wrong):
        assert value not in log
        for response in seen:
            assert value not in response.text, response.text


# -- bad requests -----------------------------------------------------------------------------

# (method, path, body, the field the 400 names)
INVALID = [
    ("POST", "/rules", {"prefix": "x", "upstream": "ftp://example.com"}, "upstream"),
    ("POST", "/rules", {"prefix": "Bad Prefix", "upstream": "https://a.io"}, "prefix"),
    ("POST", "/rules", {"upstream": "https://a.io"}, "prefix"),
    ("POST", "/rules", {"prefix": "x", "upstream": "https://a.io", "tag_ttl": "soon"}, "tag_ttl"),
    ("POST", "/rules", {"prefix": "x", "upstream": "https://a.io", "default": "yes"}, "default"),
    (
        "POST",
        "/rules",
        {"prefix": "x", "upstream": "https://a.io", "mirror_of": ["a b"]},
        "mirror_of.0",
    ),
    ("POST", "/rules", {"prefix": "x", "upstream": "https://a.io", "colour": "red"}, "colour"),
    ("PUT", "/rules/x", {"prefix": "y", "upstream": "https://a.io"}, "prefix"),
    ("PUT", "/secrets/a%20b", {"username": "u", "accessToken": "t"}, "name"),
    ("PUT", "/secrets/s", {"username": "u:v", "accessToken": "t"}, "username"),
    ("PUT", "/secrets/s", {"username": "u"}, "accessToken"),
    (
        "PUT",
        "/registry-policy",
        {"Statement": [{"Effect": "Allow", "Action": "registry:Pul", "Resource": "*"}]},
        "Statement.0",
    ),
    ("PUT", "/registry-policy", {"Statement": [], "Extra": 1}, "body"),
    ("POST", "/templates", {"prefix": "ROOT", "applied_for": ["NEVER"]}, "applied_for.0"),
    (
        "POST",
        "/templates",
        {"prefix": "ROOT", "lifecycle_policy": {"rules": []}},
        "lifecycle_policy",
    ),
    (
        "PUT",
        "/scanning",
        {
            "scan_type": "BASIC",
            "rules": [{"scan_frequency": "DAILY", "repository_filters": [{"filter": "*"}]}],
        },
        "rules.0.scan_frequency",
    ),
    (
        "PUT",
        "/scanning",
        {"scan_type": "BASIC", "rules": [{"scan_frequency": "MANUAL", "repository_filters": []}]},
        "rules.0.repository_filters",
    ),
    ("POST", "/rules", [1, 2], "body"),
]


def test_bad_requests_are_4xx_that_say_what_is_wrong(cache: Cache) -> None:
    for method, path, body, field in INVALID:
        response = api(cache, method, path, json=body)
        assert response.status_code == 400, (method, path, body, response.text)
        error = response.json()
        assert error["code"] == "INVALID"
        assert field in [f["field"] for f in error["fields"]], (body, error)
        assert field.split(".")[0] in error["message"] or field == "body", error

    def send(content: bytes, content_type: str | None = "application/json") -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return api(cache, "POST", "/rules", content=content, headers=headers)

    not_json = send(b'{"prefix": "x",')
    assert (not_json.status_code, not_json.json()["fields"][0]["field"]) == (400, "body")
    assert send(b'{"prefix": NaN}').status_code == 400
    assert send(b"[" * 100_000 + b"]" * 100_000).status_code == 400  # nesting, not a crash
    repeated = send(b'{"prefix": "x", "prefix": "y", "upstream": "https://a.io"}')
    assert (repeated.status_code, repeated.json()["fields"][0]["field"]) == (400, "prefix")
    assert send(b"").status_code == 400
    form = send(b"prefix=x", "application/x-www-form-urlencoded")
    assert (form.status_code, form.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert send(b"{}", None).status_code == 415
    huge = send(b'{"prefix": "' + b"a" * (2 * 1024 * 1024) + b'"}')
    assert (huge.status_code, huge.json()["code"]) == (413, "TOO_LARGE")
    limit = api(cache, "GET", "/repositories", params={"limit": "lots"})
    assert (limit.status_code, limit.json()["fields"][0]["field"]) == (400, "limit")
    assert api(cache, "GET", "/images").json()["fields"][0]["field"] == "repository"

    wrong_method = api(cache, "PATCH", "/rules")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, POST"
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"
    nowhere = api(cache, "GET", "/no-such-thing")
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "NOT_FOUND")
    assert "errors" not in nowhere.json()  # the admin format, not the OCI one
    oversized = api(cache, "GET", "/rules", headers={"X-Padding": "x" * 10_000})
    assert oversized.status_code == 400
    assert oversized.json()["code"] == "INVALID"
    assert "max_header_bytes" in oversized.json()["message"]
    # The registry API keeps its own format for the same mistake.
    registry = cache.get("/v2/", headers={"X-Padding": "x" * 10_000})
    assert (registry.status_code, registry.json()["errors"][0]["code"]) == (431, "UNSUPPORTED")

    # Nothing was created by any of it, and the server kept serving.
    assert [r["prefix"] for r in api(cache, "GET", "/rules").json()["rules"]] == [PREFIX]
    assert cache.get("/healthz").status_code == 200
    assert cache.server.running


# -- auth -------------------------------------------------------------------------------------


async def _put_policy(data_dir: Path, policy: dict[str, Any]) -> None:
    metadata = await MetadataStore.open(sqlite_url(DataLayout(data_dir).metadata_file))
    try:
        await AccessStore(metadata.engine).put_policy(json.dumps(policy))
    finally:
        await metadata.close()


def _basic(name: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def test_with_auth_on_the_admin_api_needs_registry_admin(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}},
    )
    cache.server.command("users", "add", "bob", stdin="bob-Secret-2")
    ops_key = cache.server.command("apikeys", "create", "ops").strip()
    policy = {
        "Statement": [
            {
                "Sid": "OpsAdministers",
                "Effect": "Allow",
                "Principal": {"ApiKey": ["ops"]},
                "Action": "registry:Admin",
                "Resource": "*",
            },
            {"Effect": "Allow", "Principal": "*", "Action": "registry:Pull", "Resource": "*"},
        ]
    }
    asyncio.run(_put_policy(cache.server.data_dir, policy))
    ops = _basic("ops", ops_key)
    wait_for(
        lambda: api(cache, "GET", "/rules", headers=ops).status_code == 200,
        5,
        "the policy to be read",
    )

    anonymous = api(cache, "GET", "/rules")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert anonymous.json()["code"] == "UNAUTHORIZED"
    assert "errors" not in anonymous.json()
    wrong = api(cache, "GET", "/rules", headers=_basic("bob", "not-his-password"))
    assert (wrong.status_code, wrong.json()["code"]) == (401, "UNAUTHORIZED")

    bob = api(
        cache,
        "PUT",
        "/rules/x",
        json={"upstream": "https://a.io"},
        headers=_basic("bob", "bob-Secret-2"),
    )
    assert bob.status_code == 403
    assert bob.json()["code"] == "DENIED"
    assert "registry:Admin" in bob.json()["message"] and '"bob"' in bob.json()["message"]
    assert api(cache, "GET", "/rules/x", headers=ops).status_code == 404  # nothing was made

    made = api(cache, "PUT", "/rules/x", json={"upstream": "https://a.io"}, headers=ops)
    assert made.status_code == 201, made.text
    # A registry token works too: the policy decides, not the token's scope.
    issued = cache.get("/token", params={"service": "pullthrough"}, headers=ops)
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert api(cache, "DELETE", "/rules/x", headers=bearer).status_code == 204
    assert api(cache, "GET", "/status", headers=bearer).status_code == 200
    assert httpx.get(cache.url("/api/v1/openapi.json")).status_code == 200  # public


# -- cache contents and statistics ------------------------------------------------------------


def _manifest_requests(server: PullthroughServer, repository: str) -> int:
    """Manifest requests the cache answered for `repository`, from its access log."""
    count = 0
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            path = entry.get("path", "")
            if path.startswith(f"/v2/{repository}/manifests/") and entry.get("status") == 200:
                count += 1
    return count


def _blob_bytes(image: PushedImage) -> int:
    return sum(blob.size for blob in image.blobs)


def test_listings_show_what_a_real_client_pulled(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    app, multi = fixture_images.oci_app, fixture_images.multi
    for image in (app, multi):
        copied = skopeo_copy(cache.ref(image.reference), tmp_path / image.repo.replace("/", "-"))
        assert copied.returncode == 0, copied.stderr
    amd64 = multi.child("amd64")
    app_name, multi_name = f"{PREFIX}/{app.repo}", f"{PREFIX}/{multi.repo}"
    pulls = {name: _manifest_requests(cache.server, name) for name in (app_name, multi_name)}
    assert pulls[app_name] >= 1 and pulls[multi_name] >= 2  # the index, then a platform

    def listed() -> dict[str, Any]:
        found = api(cache, "GET", "/repositories", params={"prefix": f"{PREFIX}/team/"})
        return {r["name"]: r for r in found.json()["repositories"]}

    wait_for(
        lambda: {n: r["pull_count"] for n, r in listed().items()} == pulls,
        FLUSH_DEADLINE,
        f"pull counts {pulls}",
    )
    repositories = listed()
    assert sorted(repositories) == [multi_name, app_name]
    assert repositories[app_name] | {"created_at": None, "last_pulled_at": None} == {
        "name": app_name,
        "rule": PREFIX,
        "created_at": None,
        "image_count": 1,
        "tag_count": 1,
        "size_bytes": _blob_bytes(app),
        "last_pulled_at": None,
        "pull_count": pulls[app_name],
    }
    assert iso(repositories[app_name]["created_at"])
    assert iso(repositories[app_name]["last_pulled_at"])
    assert repositories[multi_name]["size_bytes"] == _blob_bytes(amd64)  # only what was pulled
    one = api(cache, "GET", f"/repositories/{segment(app_name)}")
    assert one.json() == repositories[app_name]
    assert api(cache, "GET", "/repositories", params={"limit": 1}).json()["repositories"] == [
        repositories[multi_name]
    ]

    [app_image] = api(cache, "GET", "/images", params={"repository": app_name}).json()["images"]
    assert app_image["digest"] == app.digest
    assert app_image["media_type"] == OCI_MANIFEST
    assert app_image["tags"] == ["v1"]
    assert app_image["platforms"] == ["linux/amd64"]  # from the image config
    assert app_image["size_bytes"] == _blob_bytes(app)
    assert (app_image["rule"], app_image["repository"]) == (PREFIX, app_name)
    assert app_image["pull_count"] == pulls[app_name]
    assert iso(app_image["cached_at"]) and iso(app_image["last_pulled_at"])

    [index] = api(cache, "GET", "/images", params={"repository": multi_name}).json()["images"]
    assert index["digest"] == multi.digest
    assert index["media_type"] == OCI_INDEX
    assert index["platforms"] == ["linux/amd64", "linux/arm64"]  # from the index entries
    assert index["tags"] == ["latest"]
    assert index["pull_count"] == pulls[multi_name]  # the index and its platform manifest
    assert index["size_bytes"] == _blob_bytes(amd64)

    tags = api(cache, "GET", "/tags", params={"repository": multi_name}).json()["tags"]
    assert [(t["name"], t["digest"]) for t in tags] == [("latest", multi.digest)]
    assert iso(tags[0]["updated_at"])
    missing = api(cache, "GET", "/images", params={"repository": f"{PREFIX}/nothing/here"})
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")

    status = api(cache, "GET", "/status").json()
    assert (status["rules"], status["repositories"], status["images"]) == (1, 2, 2)
    blobs = {b.digest: b.size for b in [*app.blobs, *amd64.blobs]}
    assert (status["blobs"], status["stored_bytes"]) == (len(blobs), sum(blobs.values()))


def test_statistics_show_a_cold_pull_as_misses_and_a_warm_one_as_hits(
    cache: Cache, fixture_images: FixtureImages, tmp_path: Path
) -> None:
    image = fixture_images.busybox
    requests = 1 + len(image.blobs)  # the manifest, then each blob
    moved = len(image.manifest) + _blob_bytes(image)

    def stats_of_rule() -> dict[str, Any]:
        report = api(cache, "GET", "/stats").json()
        rules: dict[str, dict[str, Any]] = {r.pop("prefix"): r for r in report["rules"]}
        return rules.get(PREFIX, {})

    assert api(cache, "GET", "/stats").json() == {
        "since": None,
        "total": {"hits": 0, "misses": 0, "bytes_from_cache": 0, "bytes_from_upstream": 0},
        "rules": [],
    }
    assert skopeo_copy(cache.ref(image.reference), tmp_path / "cold").returncode == 0
    cold = {"hits": 0, "misses": requests, "bytes_from_cache": 0, "bytes_from_upstream": moved}
    wait_for(lambda: stats_of_rule() == cold, FLUSH_DEADLINE, f"statistics {cold}")

    assert skopeo_copy(cache.ref(image.reference), tmp_path / "warm").returncode == 0
    warm = {**cold, "hits": requests, "bytes_from_cache": moved}
    wait_for(lambda: stats_of_rule() == warm, FLUSH_DEADLINE, f"statistics {warm}")
    report = api(cache, "GET", "/stats").json()
    assert report["total"] == warm
    assert iso(report["since"])

    [upstream] = api(cache, "GET", "/upstreams").json()["upstreams"]
    assert (upstream["prefix"], upstream["upstream"]) == (PREFIX, cache.proxy.url)
    wait_for(
        lambda: api(cache, "GET", "/upstreams").json()["upstreams"][0]["reachable"] is True,
        FLUSH_DEADLINE,
        "the upstream's health to be recorded",
    )
    upstream = api(cache, "GET", "/upstreams").json()["upstreams"][0]
    assert iso(upstream["last_success_at"])
    assert (upstream["last_error"], upstream["blocked_until"]) == (None, None)
