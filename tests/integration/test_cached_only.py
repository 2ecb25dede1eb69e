"""Listings say what is cached, nothing else: a pull that fails leaves no repository behind,
an image's expiry takes its emptied repository out of the listings, and a deleted rule takes
its statistics at once and its repositories (and the blobs only they used) at the next
garbage collection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok
from tests.integration.cache_setup import PREFIX, Cache, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy

pytestmark = pytest.mark.integration

# Each worker re-reads the rules at most once a second; statistics are written every 2 s.
RULE_DEADLINE = 5.0
FLUSH_DEADLINE = 20.0
MISSING_BLOB = "sha256:" + "0" * 64


def api(cache: Cache, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, cache.url(f"/api/v1{path}"), timeout=60, **kwargs)


def manifest(cache: Cache, path: str) -> httpx.Response:
    return cache.get(path, headers={"Accept": UPSTREAM_ACCEPT})


def what_is_listed(cache: Cache) -> dict[str, Any]:
    """Every way a user sees which repositories the cache holds."""
    status = api(cache, "GET", "/status").json()
    return {
        "catalog": cache.get("/v2/_catalog").json()["repositories"],
        "repositories": [
            r["name"] for r in api(cache, "GET", "/repositories").json()["repositories"]
        ],
        "status": (status["repositories"], status["images"], status["blobs"]),
    }


def two_days_on() -> str:
    return (datetime.now(UTC) + timedelta(days=2)).isoformat()


def test_pulls_that_fail_leave_no_repository_behind(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], {"upstream_retries": 1}
    )
    image = fixture_images.oci_app
    for rule in (
        {"prefix": "down", "upstream": "http://127.0.0.1:9"},  # nothing listens there
        {"prefix": "locked", "upstream": upstreams["basic"].url},  # no credential: 401
    ):
        assert api(cache, "POST", "/rules", json=rule).status_code == 201

    def refused(path: str, status: int) -> bool:
        return manifest(cache, path).status_code == status

    # Until the new rules reach the worker the names go to the default rule: also a failure.
    wait_for(lambda: refused(f"/v2/down/{image.repo}/manifests/v1", 502), RULE_DEADLINE, "down")
    # An upstream that refuses us answers 401, which the cache passes on as "not there, or
    # not for you" (404) and names.
    wait_for(
        lambda: "answered 401" in manifest(cache, f"/v2/locked/{image.repo}/manifests/v1").text,
        RULE_DEADLINE,
        "the locked rule",
    )
    assert manifest(cache, f"/v2/{PREFIX}/{image.repo}/manifests/no-such-tag").status_code == 404
    assert manifest(cache, f"/v2/{PREFIX}/no/such/repo/manifests/latest").status_code == 404
    missing_blob = cache.get(f"/v2/{PREFIX}/{image.repo}/blobs/{MISSING_BLOB}")
    assert missing_blob.status_code == 404
    assert cache.proxy.count("GET", path_contains=MISSING_BLOB) == 1  # it was asked for

    assert what_is_listed(cache) == {"catalog": [], "repositories": [], "status": (0, 0, 0)}

    # What a pull that works caches is listed; expiring it empties the listings again.
    copied = skopeo_copy(cache.ref(image.reference), tmp_path / "copy")
    assert copied.returncode == 0, copied.stderr
    name = f"{PREFIX}/{image.repo}"
    assert what_is_listed(cache) == {
        "catalog": [name],
        "repositories": [name],
        "status": (1, 1, len(image.blobs)),
    }
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy))
    cache.server.command("lifecycle", "policy", name, "--set", str(policy_file))
    cache.server.command("lifecycle", "run", "--now", two_days_on())
    assert what_is_listed(cache) == {"catalog": [], "repositories": [], "status": (0, 0, 0)}


def test_a_deleted_rule_takes_its_statistics_and_the_next_gc_its_repositories(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"], {"workers": 1})
    kept, dropped = fixture_images.busybox, fixture_images.oci_app
    assert (
        api(
            cache, "POST", "/rules", json={"prefix": "extra", "upstream": cache.proxy.url}
        ).status_code
        == 201
    )
    extra_ref = f"{cache.server.host}/extra/{dropped.reference}"
    wait_for(
        lambda: (
            manifest(cache, f"/v2/extra/{dropped.repo}/manifests/{dropped.tag}").status_code == 200
        ),
        RULE_DEADLINE,
        "the new rule",
    )
    for ref, into in ((extra_ref, "extra"), (cache.ref(kept.reference), "kept")):
        copied = skopeo_copy(ref, tmp_path / into)
        assert copied.returncode == 0, copied.stderr

    def stats_rules() -> set[str]:
        return {r["prefix"] for r in api(cache, "GET", "/stats").json()["rules"]}

    wait_for(lambda: stats_rules() == {"extra", PREFIX}, FLUSH_DEADLINE, "both rules' statistics")
    extra_name, kept_name = f"extra/{dropped.repo}", f"{PREFIX}/{kept.repo}"
    only_dropped = dropped.blob_digests() - kept.blob_digests()
    assert only_dropped and all(cache.stored_blob(d).exists() for d in only_dropped)

    # A pull counted just before the deletion is written after it: it is dropped too.
    assert manifest(cache, f"/v2/extra/{dropped.repo}/manifests/{dropped.tag}").status_code == 200
    assert api(cache, "DELETE", "/rules/extra").status_code == 204
    assert stats_rules() == {PREFIX}
    # No rule serves its repositories: the name goes to the default rule, whose upstream has
    # no such repository.
    wait_for(
        lambda: (
            manifest(cache, f"/v2/extra/{dropped.repo}/manifests/{dropped.tag}").status_code == 404
        ),
        RULE_DEADLINE,
        "the deletion to reach the worker",
    )
    hits_before = api(cache, "GET", "/stats").json()["total"]["hits"]
    assert manifest(cache, f"/v2/{kept_name}/manifests/{kept.tag}").status_code == 200
    wait_for(
        lambda: api(cache, "GET", "/stats").json()["total"]["hits"] > hits_before,
        FLUSH_DEADLINE,
        "a flush after the deletion",
    )
    assert stats_rules() == {PREFIX}

    # Until the next collection the repository is still stored (a rule made again with the
    # same prefix would serve it); the collection drops it and the blobs only it used.
    assert extra_name in what_is_listed(cache)["catalog"]
    summary = cache.server.command("lifecycle", "run", "--now", two_days_on())
    assert f"Dropped 1 repository of deleted rules: {extra_name}." in summary
    assert f"{len(only_dropped)} blobs deleted" in summary
    assert what_is_listed(cache) == {
        "catalog": [kept_name],
        "repositories": [kept_name],
        "status": (1, 1, len(kept.blobs)),
    }
    assert not any(cache.stored_blob(d).exists() for d in only_dropped)
    assert all(cache.stored_blob(d).exists() for d in kept.blob_digests())
    admin_ok(cache.server, "status")  # the table renders without the deleted rule
