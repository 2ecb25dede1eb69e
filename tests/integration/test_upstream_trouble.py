"""Through upstream trouble: an upstream that is down, slow, cuts a blob short or rate-limits us.

Cached tags keep pulling (stale, and saying so), uncached content fails with an error that
names the upstream, a broken blob download resumes with Range, a 429's Retry-After is honoured
by every worker process, and rate-limit headers show in `pullthrough status`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import pullthrough_cli
from tests.integration.cache_setup import Cache, sha256, start_cache, wait_for
from tests.rig.images import FixtureImages, PushedImage, RegistryPusher, retag
from tests.rig.oci_build import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration

ACCEPT = {"Accept": ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST])}
RETRY_AFTER = 3
THROTTLE_LOGGER = "pullthrough.upstream.throttle"


@pytest.fixture
def upstream(upstreams: dict[AuthMode, UpstreamRegistry]) -> UpstreamRegistry:
    return upstreams["anonymous"]


@pytest.fixture
def own_upstream(rig_tools: None, tmp_path: Path) -> Iterator[UpstreamRegistry]:
    """A registry of this test's own, which it may stop (the session's are shared)."""
    registry = UpstreamRegistry(tmp_path / "own-storage", "anonymous", workdir=tmp_path / "own")
    registry.start()
    yield registry
    registry.stop()


def manifest(cache: Cache | PullthroughServer, repo: str, reference: str) -> httpx.Response:
    server = cache.server if isinstance(cache, Cache) else cache
    return httpx.get(
        f"{server.url}/v2/up/{repo}/manifests/{reference}", headers=ACCEPT, timeout=120
    )


def pullthrough_status(server: PullthroughServer, *extra: str) -> subprocess.CompletedProcess[str]:
    """`pullthrough status --server <the server>` as an operator runs it."""
    result = pullthrough_cli(server, "status", *extra)
    assert result.returncode == 0, result.stderr
    return result


def status_json(server: PullthroughServer) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(pullthrough_status(server, "--output", "json").stdout)
    return document


def throttle_log(server: PullthroughServer, containing: str) -> list[dict[str, Any]]:
    """The server's log lines about upstream throttling whose message contains `containing`."""
    entries = []
    for line in server.log_text().splitlines():
        if containing in line and line.startswith("{"):
            entry = json.loads(line)
            if entry["logger"] == THROTTLE_LOGGER and containing in entry["message"]:
                entries.append(entry)
    return entries


def assert_refused_for_rate_limit(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 1 <= int(response.headers["Retry-After"]) <= RETRY_AFTER
    assert "retry after" in response.json()["errors"][0]["message"]


# -- upstream down or slow --------------------------------------------------------------------


def test_with_the_upstream_stopped_cached_tags_still_pull(
    own_upstream: UpstreamRegistry, pullthrough_server: StartPullthrough, tmp_path: Path
) -> None:
    with RegistryPusher(own_upstream.url) as pusher:
        app = retag(pusher, "team/app", "v1")
        tool = retag(pusher, "team/tool", "2.0", flavor="docker", layer_count=3)
        never_pulled = retag(pusher, "team/app", "v2")
    server = pullthrough_server(
        [{"prefix": "up", "upstream": own_upstream.url, "default": True, "tag_ttl": "1s"}],
        upstream_retries=1,
    )
    for image in (app, tool):
        warm = skopeo_copy(f"{server.host}/up/{image.reference}", tmp_path / f"warm-{image.tag}")
        assert warm.returncode == 0, warm.stderr

    own_upstream.stop()
    time.sleep(1.2)  # past tag_ttl: serving a tag now needs upstream, which is gone

    for image in (app, tool):
        dest = tmp_path / f"offline-{image.tag}"
        offline = skopeo_copy(f"{server.host}/up/{image.reference}", dest)
        assert offline.returncode == 0, offline.stderr
        assert verified_dir_digests(dest) == image.all_digests()
        answer = manifest(server, image.repo, str(image.tag))
        assert answer.status_code == 200
        assert answer.content == image.manifest
        assert answer.headers["X-Pullthrough-Cache"] == "stale"
        assert answer.headers["Warning"].startswith("110 ")
        assert "stale" in answer.headers["Warning"]

    uncached = manifest(server, never_pulled.repo, str(never_pulled.tag))
    assert uncached.status_code in (502, 504)
    error = uncached.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert f"upstream up ({own_upstream.host})" in error["message"]
    uncached_blob = httpx.get(
        f"{server.url}/v2/up/team/app/blobs/{never_pulled.blobs[-1].digest}", timeout=60
    )
    assert uncached_blob.status_code in (502, 504)
    assert own_upstream.host in uncached_blob.json()["errors"][0]["message"]

    # Status tells the operator: the upstream is unreachable, and why.
    def upstream_health() -> dict[str, Any]:
        upstreams: list[dict[str, Any]] = status_json(server)["upstreams"]
        return upstreams[0]

    wait_for(lambda: upstream_health()["reachable"] is False, 10, "the failure to be recorded")
    health = upstream_health()
    assert health["prefix"] == "up"
    assert health["last_success_at"] is not None  # it answered before it stopped
    assert f"upstream up ({own_upstream.host})" in health["last_error"]
    assert health["last_error_at"] > health["last_success_at"]


def test_a_slow_upstream_times_out_into_stale_or_504(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstream,
        settings={"upstream_read_timeout": "1s"},
        tag_ttl="1s",
    )
    image = fixture_images.busybox
    assert manifest(cache, "library/busybox", "latest").content == image.manifest
    time.sleep(1.2)
    cache.proxy.delay(r"/manifests/", 3)

    stale = manifest(cache, "library/busybox", "latest")
    assert stale.status_code == 200
    assert stale.content == image.manifest
    assert stale.headers["X-Pullthrough-Cache"] == "stale"
    slow = manifest(cache, "team/oci-app", "v1")
    assert slow.status_code == 504
    error = slow.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert cache.proxy.host in error["message"]
    assert "timed out" in error["message"]


def test_max_stale_bounds_the_age_of_what_is_served(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstream, tag_ttl="1s", max_stale="3s")
    image = fixture_images.busybox
    assert manifest(cache, "library/busybox", "latest").content == image.manifest
    checked = time.monotonic()
    time.sleep(1.2)
    cache.proxy.fail(r"/v2/", 503)

    within = manifest(cache, "library/busybox", "latest")
    assert within.status_code == 200
    assert within.headers["X-Pullthrough-Cache"] == "stale"

    time.sleep(max(0.0, checked + 3.3 - time.monotonic()))
    beyond = manifest(cache, "library/busybox", "latest")
    assert beyond.status_code == 502
    error = beyond.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert cache.proxy.host in error["message"]

    cache.proxy.clear_faults()
    back = manifest(cache, "library/busybox", "latest")
    assert back.status_code == 200
    assert back.headers["X-Pullthrough-Cache"] == "revalidated"


# -- a blob cut short -------------------------------------------------------------------------


def test_a_connection_cut_mid_blob_is_resumed_with_range(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstream)
    (layer,) = [b for b in fixture_images.large.blobs if b.size >= 256 * 1024 * 1024]
    cut_at = 96 * 1024 * 1024
    cache.proxy.drop_after(layer.digest, cut_at, times=1)

    hasher = hashlib.sha256()
    received = 0
    url = cache.url(f"/v2/up/team/large/blobs/{layer.digest}")
    with httpx.stream("GET", url, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(layer.size)
        for chunk in response.iter_bytes(1 << 20):
            hasher.update(chunk)
            received += len(chunk)

    assert received == layer.size
    assert f"sha256:{hasher.hexdigest()}" == layer.digest
    gets = [e for e in cache.proxy.entries if e.method == "GET" and layer.digest in e.path]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    resumed_from = int(gets[1].headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_from <= cut_at
    assert gets[1].status == 206
    stored = cache.stored_blob(layer.digest)
    wait_for(stored.exists, 30, "the resumed fill to commit")
    assert stored.stat().st_size == layer.size
    digest = hashlib.sha256()
    with stored.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    assert f"sha256:{digest.hexdigest()}" == layer.digest
    assert cache.spool_files() == []


# -- 429 and rate limits ----------------------------------------------------------------------


def test_retry_after_is_honoured_by_every_worker(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstream, settings={"workers": 2}, tag_ttl="1s"
    )
    cached = fixture_images.busybox
    warm = skopeo_copy(cache.ref(cached.reference), tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr
    cached_blob = cached.blobs[-1]
    uncached = fixture_images.oci_app
    uncached_blob = uncached.blobs[-1]
    time.sleep(1.2)  # the cached tag is stale: serving it now asks upstream, when allowed
    cache.proxy.fail(r"/v2/", 429, headers={"Retry-After": str(RETRY_AFTER)}, times=1)

    sent_at = time.monotonic()  # the block ends no sooner than RETRY_AFTER after this
    first = manifest(cache, uncached.repo, "v1")
    answered_at = time.monotonic()  # ... and no later than RETRY_AFTER after this
    assert_refused_for_rate_limit(first)
    assert cache.proxy.host in first.json()["errors"][0]["message"]
    cache.proxy.reset()

    def one_round() -> list[tuple[str, httpx.Response]]:
        """Each kind of request, three times, at once, on new connections: the kernel spreads
        them over both workers."""
        requests = {
            "stale tag": lambda: manifest(cache, "library/busybox", "latest"),
            "cached blob": lambda: cache.get(f"/v2/up/library/busybox/blobs/{cached_blob.digest}"),
            "uncached tag": lambda: manifest(cache, uncached.repo, "v1"),
            "uncached blob": lambda: cache.get(
                f"/v2/up/{uncached.repo}/blobs/{uncached_blob.digest}"
            ),
        }
        kinds = list(requests) * 3
        with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
            return list(zip(kinds, pool.map(lambda kind: requests[kind](), kinds), strict=True))

    rounds = 0
    while time.monotonic() < sent_at + RETRY_AFTER - 1.0:
        answers = one_round()
        if time.monotonic() >= sent_at + RETRY_AFTER:
            break  # this round outlived the block: it proves nothing
        for kind, answer in answers:
            if kind == "stale tag":
                assert answer.status_code == 200
                assert answer.content == cached.manifest
                assert answer.headers["X-Pullthrough-Cache"] == "stale"
            elif kind == "cached blob":
                assert answer.status_code == 200
                assert sha256(answer.content) == cached_blob.digest
            else:
                assert_refused_for_rate_limit(answer)
        # Nothing reached upstream while it asked us to wait.
        assert cache.proxy.requests == []
        rounds += 1
    assert rounds >= 1, "the machine is too slow to finish a round within Retry-After"

    # Both workers took part: one saw the 429, the other learnt of it from the database.
    saw = {entry["pid"] for entry in throttle_log(cache.server, "answered 429")}
    learnt = {entry["pid"] for entry in throttle_log(cache.server, "asked another worker")}
    assert len(saw) == 1
    assert learnt - saw, "the second worker never refused a request"

    time.sleep(max(0.0, answered_at + RETRY_AFTER + 0.2 - time.monotonic()))
    fresh = manifest(cache, uncached.repo, "v1")
    assert fresh.status_code == 200
    assert fresh.content == uncached.manifest
    assert cache.proxy.count("GET", path_contains=f"/{uncached.repo}/manifests/v1") == 1
    revalidated = manifest(cache, "library/busybox", "latest")
    assert revalidated.headers["X-Pullthrough-Cache"] in ("revalidated", "hit")


def test_rate_limit_headers_show_in_status_and_warn_when_low(
    upstream: UpstreamRegistry,
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    # The manifests pulled alone keep their blobs uncached (no eager fill): only the copied
    # image's blobs are stored.
    cache = start_cache(counting_proxy, pullthrough_server, upstream, eager_fill=False)
    cache.proxy.extra_headers(
        r"/manifests/",
        {
            "ratelimit-limit": "100;w=21600",
            "ratelimit-remaining": "7;w=21600",
            "docker-ratelimit-source": "203.0.113.9",
        },
    )
    image: PushedImage = fixture_images.oci_app
    copy = skopeo_copy(cache.ref(image.reference), tmp_path / "copy")
    assert copy.returncode == 0, copy.stderr
    for repo, tag in (("library/busybox", "latest"), ("team/many-layers", "v1")):
        assert manifest(cache, repo, tag).status_code == 200

    def recorded() -> bool:
        return status_json(cache.server)["upstreams"][0]["rate_limit"] is not None

    wait_for(recorded, 10, "the rate limit to be recorded")
    document = status_json(cache.server)
    (rule,) = document["upstreams"]
    assert rule["prefix"] == "up"
    assert rule["upstream"] == cache.proxy.url
    assert rule["rate_limit"]["limit"] == 100
    assert rule["rate_limit"]["remaining"] == 7
    assert rule["rate_limit"]["window"] == 21600
    assert rule["rate_limit"]["source"] == "203.0.113.9"
    assert rule["blocked_until"] is None
    assert document["repositories"] == 3
    assert document["images"] == 3
    assert document["blobs"] == len(image.blobs)
    assert document["stored_bytes"] == sum(blob.size for blob in image.blobs)
    repositories = json.loads(
        pullthrough_cli(cache.server, "repos", "list", "--output", "json").stdout
    )["repositories"]
    assert sum(repo["tag_count"] for repo in repositories) == 3

    table = pullthrough_status(cache.server).stdout
    assert "7/100 per 6h" in table
    assert f"{len(image.blobs)} blobs" in table
    assert f"warning: rule up: {cache.proxy.url} has 7 of 100 pulls left per 6h" in table

    # Three upstream manifest responses said the headroom is low; the log says it once.
    (warning,) = throttle_log(cache.server, "rate limit is running low")
    assert warning["level"] == "warning"
    assert "7 of 100 pulls left per 6h" in warning["message"]

    # A 429 shows as a block, with how long it lasts.
    cache.proxy.fail(r"/manifests/", 429, headers={"Retry-After": "120"}, times=1)
    assert manifest(cache, "team/multi", "latest").status_code == 429
    (rule,) = status_json(cache.server)["upstreams"]
    blocked_until = datetime.fromisoformat(rule["blocked_until"].replace("Z", "+00:00"))
    assert 60 < (blocked_until - datetime.now(UTC)).total_seconds() <= 120
    assert re.search(r"UTC \(in [12]m\)", pullthrough_status(cache.server).stdout)
