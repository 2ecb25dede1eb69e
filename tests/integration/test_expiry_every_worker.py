"""What `lifecycle run` expires stops being served by every worker before the command returns:
no worker answers from its manifest memo, the image is cached again on the next pull (listed,
its blobs fetched once), and the next collection keeps what that pull cached."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok
from tests.integration.cache_setup import PREFIX, Cache, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration

WORKERS = 2
EXPIRE_AFTER_A_DAY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire every image a day after it was cached",
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


def worker_of(server: PullthroughServer, request_id: str) -> int:
    """The pid of the worker that answered the request, from its JSON log line."""
    wait_for(
        lambda: request_id in server.served_by({request_id}),
        10,
        f"the log line of request {request_id}",
    )
    return server.served_by({request_id})[request_id]


def pull_on_every_worker(
    cache: Cache, path: str, answers_each: int, attempts: int = 60
) -> dict[int, list[httpx.Response]]:
    """GET `path` on a new connection each time (the kernel spreads them over the workers)
    until every worker answered `answers_each` times; the responses by worker, in order."""
    by_worker: dict[int, list[httpx.Response]] = {}
    for _ in range(attempts):
        request_id = uuid.uuid4().hex[:16]
        response = cache.get(path, headers={"Accept": UPSTREAM_ACCEPT, "X-Request-Id": request_id})
        by_worker.setdefault(worker_of(cache.server, request_id), []).append(response)
        if len(by_worker) == WORKERS and all(len(r) >= answers_each for r in by_worker.values()):
            return by_worker
    raise AssertionError(f"{attempts} requests did not reach every worker: {by_worker}")


def listed_digests(cache: Cache, repository: str) -> list[str]:
    found = httpx.get(
        cache.url("/api/v1/images"), params={"repository": repository}, timeout=30
    ).json()
    return [image["digest"] for image in found.get("images", [])]


def cached_with_skopeo(cache: Cache, image: PushedImage, into: Path) -> None:
    copied = skopeo_copy(cache.ref(image.reference), into)
    assert copied.returncode == 0, copied.stderr
    assert verified_dir_digests(into) >= {image.digest, *image.blob_digests()}


def test_an_expired_tag_is_a_miss_on_every_worker_once_lifecycle_run_returns(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    settings: dict[str, Any] = {
        "workers": WORKERS,
        "upstream_retries": 1,
        # Collection takes every unreferenced blob at once, so that a blob served for an image
        # that is no longer stored would be gone (and fetched again) after the next run.
        "lifecycle": {"interval": 0, "gc_grace": 0},
    }
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"], settings)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(EXPIRE_AFTER_A_DAY))
    admin_ok(cache.server, "templates", "put", "ROOT", "--lifecycle-policy", str(policy_file))
    image = fixture_images.oci_app
    repository = f"{PREFIX}/{image.repo}"
    path = f"/v2/{repository}/manifests/{image.tag}"

    cached_with_skopeo(cache, image, tmp_path / "first")
    # Each worker answers twice: the second answer comes from its manifest memo.
    for answers in pull_on_every_worker(cache, path, answers_each=2).values():
        assert [r.headers["X-Pullthrough-Cache"] for r in answers[:2]] == ["hit", "hit"]
    assert listed_digests(cache, repository) == [image.digest]

    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    summary = cache.server.command("lifecycle", "run", "--now", later)
    assert repository in summary
    assert f"{len(image.blobs)} blobs deleted" in summary
    assert listed_digests(cache, repository) == []

    # With upstream failing, a worker that still served the tag from memory would answer 200;
    # every worker asks upstream instead, and says it is unavailable (502).
    cache.proxy.fail(r"/manifests/", 503)
    cache.proxy.reset()
    for pid, answers in pull_on_every_worker(cache, path, answers_each=1).items():
        assert [r.status_code for r in answers] == [502] * len(answers), pid
        assert all("X-Pullthrough-Cache" not in r.headers for r in answers)
    asked = cache.proxy.count("GET", path_contains=f"/manifests/{image.tag}")
    assert asked >= WORKERS

    cache.proxy.clear_faults()
    cache.proxy.reset()
    first = cache.get(path, headers={"Accept": UPSTREAM_ACCEPT})
    assert (first.status_code, first.headers["X-Pullthrough-Cache"]) == (200, "miss")
    assert first.headers["Docker-Content-Digest"] == image.digest
    cached_with_skopeo(cache, image, tmp_path / "again")
    assert cache.upstream_manifest_gets() == 1
    for blob in image.blobs:
        assert cache.proxy.count("GET", path_contains=f"/blobs/{blob.digest}") == 1, blob.digest
    assert cache.upstream_blob_gets() == len(image.blobs)
    assert listed_digests(cache, repository) == [image.digest]

    # The next collection keeps what that pull cached: a pull after it asks upstream nothing.
    summary = cache.server.command("lifecycle", "run")
    assert "0 blobs deleted" in summary
    cache.proxy.reset()
    cached_with_skopeo(cache, image, tmp_path / "warm")
    assert cache.proxy.requests == []
