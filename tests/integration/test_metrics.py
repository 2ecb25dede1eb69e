"""Prometheus metrics of a server with two workers: pulls move the counters by exactly what was
served, as one scrape sums them over the workers; /metrics behind auth and on metrics_listen."""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import MANIFEST_PATH, Cache, start_cache, wait_for
from tests.rig.images import FixtureImages
from tests.rig.metrics import Scrape, alert_queries, dashboard_queries, metric_names, scrape
from tests.rig.oci_build import OCI_INDEX, OCI_MANIFEST
from tests.rig.ports import free_port
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
RULE = "up"


def request_id() -> str:
    return f"metrics-{uuid.uuid4().hex[:12]}"


def settled(cache: Cache, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Scrape:
    """The first scrape whose values are `expected` (a miss is counted when its stream ends,
    a moment after the client has the last byte), or the last one, for the assertion."""
    last: list[Scrape] = []

    def matches() -> bool:
        last[:] = [scrape(cache.url("/metrics"))]
        return all(last[0].value(n, **dict(ls)) == v for (n, ls), v in expected.items())

    with contextlib.suppress(AssertionError):  # the caller's assertion says what differs
        wait_for(matches, 20, "the metrics to show the pulls")
    return last[0]


def values(
    found: Scrape, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(n, ls): found.value(n, **dict(ls)) for (n, ls) in expected}


def test_cold_then_warm_pulls_through_two_workers_in_one_scrape(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    # Eager fill off: every blob is fetched for the request that asks for it, so each request's
    # miss or hit is known.
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        {"workers": 2},
        eager_fill=False,
    )
    image = fixture_images.oci_app
    blobs = image.blobs
    blob_bytes = sum(blob.size for blob in blobs)
    before = scrape(cache.url("/metrics"))
    assert before.value("pullthrough_fills_in_progress") == 0

    # Cold: the manifest and every blob come from upstream.
    ids = set()
    manifest_path = f"/v2/{RULE}/{image.repo}/manifests/{image.tag}"
    for path in [manifest_path, *(f"/v2/{RULE}/{image.repo}/blobs/{b.digest}" for b in blobs)]:
        rid = request_id()
        ids.add(rid)
        response = cache.get(path, headers={**ACCEPT, "X-Request-Id": rid})
        assert response.status_code == 200, response.text
        assert response.headers["X-Pullthrough-Cache"] == "miss"
    upstream_requests = len(cache.proxy.requests)
    answered = collections.Counter((entry.method, entry.status) for entry in cache.proxy.entries)
    assert answered[("GET", 200)] >= 1 + len(blobs)
    assert cache.upstream_blob_gets() == len(blobs)

    def delta(
        name: str, change: float, **labels: str
    ) -> tuple[tuple[str, tuple[tuple[str, str], ...]], float]:
        key = (name, tuple(sorted(labels.items())))
        return key, before.value(name, **labels) + change

    cold_expected = dict(
        [
            delta("pullthrough_cache_requests_total", 1, rule=RULE, kind="manifest", result="miss"),
            delta(
                "pullthrough_cache_requests_total",
                len(blobs),
                rule=RULE,
                kind="blob",
                result="miss",
            ),
            delta("pullthrough_cache_requests_total", 0, result="hit"),
            delta(
                "pullthrough_served_bytes_total",
                len(image.manifest),
                kind="manifest",
                source="upstream",
            ),
            delta(
                "pullthrough_served_bytes_total",
                blob_bytes,
                rule=RULE,
                kind="blob",
                source="upstream",
            ),
            delta("pullthrough_served_bytes_total", 0, source="cache"),
            delta("pullthrough_upstream_fetched_bytes_total", blob_bytes, rule=RULE),
            delta("pullthrough_upstream_requests_total", upstream_requests, rule=RULE),
            # Each (method, status) as many times as upstream saw it.
            *(
                delta(
                    "pullthrough_upstream_requests_total",
                    count,
                    rule=RULE,
                    method=method,
                    code=str(status),
                )
                for (method, status), count in answered.items()
            ),
            delta("pullthrough_http_requests_total", 1, route="manifest", code="200"),
            delta("pullthrough_http_requests_total", len(blobs), route="blob", code="200"),
            delta("pullthrough_fills_total", len(blobs), rule=RULE, result="committed"),
            delta("pullthrough_fills_in_progress", 0),
        ]
    )
    cold = settled(cache, cold_expected)
    assert values(cold, cold_expected) == cold_expected
    # Upstream's latency histogram counted each of those requests once.
    assert cold.value("pullthrough_upstream_request_duration_seconds_count", rule=RULE) == (
        before.value("pullthrough_upstream_request_duration_seconds_count", rule=RULE)
        + upstream_requests
    )
    for blob in blobs:
        cache.committed(blob.digest)

    # Warm: the same pull, again and again until both workers have answered some of it.
    cache.proxy.reset()
    before = cold
    pulls = 0
    while True:
        pulls += 1
        for path in [manifest_path, *(f"/v2/{RULE}/{image.repo}/blobs/{b.digest}" for b in blobs)]:
            rid = request_id()
            ids.add(rid)
            response = cache.get(path, headers={**ACCEPT, "X-Request-Id": rid})
            assert response.status_code == 200, response.text
            assert response.headers["X-Pullthrough-Cache"] == "hit"
        wait_for(lambda: ids <= cache.server.served_by(ids).keys(), 20, "the requests' log lines")
        if len(set(cache.server.served_by(ids).values())) == 2 or pulls == 40:
            break
    assert len(set(cache.server.served_by(ids).values())) == 2, "one worker answered every request"
    assert cache.proxy.requests == []
    warm_expected = dict(
        [
            delta(
                "pullthrough_cache_requests_total", pulls, rule=RULE, kind="manifest", result="hit"
            ),
            delta(
                "pullthrough_cache_requests_total",
                pulls * len(blobs),
                rule=RULE,
                kind="blob",
                result="hit",
            ),
            delta("pullthrough_cache_requests_total", 0, result="miss"),
            delta(
                "pullthrough_served_bytes_total",
                pulls * len(image.manifest),
                kind="manifest",
                source="cache",
            ),
            delta(
                "pullthrough_served_bytes_total",
                pulls * blob_bytes,
                rule=RULE,
                kind="blob",
                source="cache",
            ),
            delta("pullthrough_served_bytes_total", 0, source="upstream"),
            delta("pullthrough_upstream_fetched_bytes_total", 0),
            delta("pullthrough_upstream_requests_total", 0),
            delta("pullthrough_http_requests_total", pulls, route="manifest", code="200"),
            delta("pullthrough_http_requests_total", pulls * len(blobs), route="blob", code="200"),
        ]
    )
    warm = settled(cache, warm_expected)
    assert values(warm, warm_expected) == warm_expected

    # The storage gauges read the metadata (at most every few seconds): what the pull stored.
    def storage() -> tuple[float, float]:
        found = scrape(cache.url("/metrics"))
        return found.value("pullthrough_storage_blobs"), found.value("pullthrough_storage_bytes")

    wait_for(lambda: storage() == (len(blobs), blob_bytes), 20, "the storage gauges")


def test_request_and_upstream_log_lines_carry_the_request_id(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], eager_fill=False
    )
    image = fixture_images.oci_app
    layer = image.blobs[-1]
    path = f"/v2/{RULE}/{image.repo}/blobs/{layer.digest}"
    # Upstream's own id for the request, as registries behind S3 or CloudFront send one.
    cache.proxy.extra_headers(r"/blobs/", {"x-amz-request-id": "upstream-req-5150"})
    response = cache.get(path, headers={"X-Request-Id": "trace-cold-blob"})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "trace-cold-blob"

    def lines() -> list[dict[str, object]]:
        text = cache.server.log_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def ours() -> list[dict[str, object]]:
        return [line for line in lines() if line.get("request_id") == "trace-cold-blob"]

    wait_for(
        lambda: (
            {"pullthrough.access", "pullthrough.upstream.requests"}
            <= {str(line["logger"]) for line in ours()}
        ),
        20,
        "the request's and its upstream request's log lines",
    )
    [access] = [line for line in ours() if line["logger"] == "pullthrough.access"]
    assert access["rule"] == RULE
    assert access["cache"] == "miss"
    assert access["bytes"] == layer.size
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float)
    upstream = [line for line in ours() if line["logger"] == "pullthrough.upstream.requests"]
    assert [(line["method"], line["status"]) for line in upstream][-1] == ("GET", 200)
    assert upstream[-1]["path"] == f"/v2/{image.repo}/blobs/{layer.digest}"
    assert upstream[-1]["rule"] == RULE
    assert upstream[-1]["upstream_request_id"] == "upstream-req-5150"


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def test_metrics_behind_auth_and_on_metrics_listen(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        {"auth": {"enabled": True}, "workers": 2, "metrics_listen": f"127.0.0.1:{metrics_port}"},
    )
    server = cache.server
    scraper_key = server.command("apikeys", "create", "prometheus").strip()
    puller_key = server.command("apikeys", "create", "puller").strip()
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"ApiKey": ["prometheus"]},
                        "Action": "registry:Admin",
                        "Resource": "*",
                    },
                    {
                        "Effect": "Allow",
                        "Principal": {"ApiKey": ["puller"]},
                        "Action": "registry:Pull",
                        "Resource": "*",
                    },
                ],
            }
        )
    )
    server.command("policy", "put", "-f", str(policy))

    refused = httpx.get(cache.url("/metrics"))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith('Basic realm="pullthrough"')
    assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = httpx.get(cache.url("/metrics"), headers=basic("prometheus", "not-the-key"))
    assert wrong.status_code == 401

    # The server reads the policy again within a second.
    wait_for(
        lambda: (
            httpx.get(cache.url("/metrics"), headers=basic("puller", puller_key)).status_code == 403
        ),
        10,
        "the policy to apply",
    )
    denied = httpx.get(cache.url("/metrics"), headers=basic("puller", puller_key))
    assert "registry:Admin" in denied.json()["errors"][0]["message"]
    found = scrape(cache.url("/metrics"), headers=basic("prometheus", scraper_key))
    assert "pullthrough_http_requests_total" in found.families

    # metrics_listen: the same page, without credentials, on its own address only; the refusals
    # above are counted there (within a second: counts are written once a second).
    def refusals() -> tuple[float, float]:
        found = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        return (
            found.value("pullthrough_http_requests_total", route="metrics", code="401"),
            found.value("pullthrough_http_requests_total", route="metrics", code="403"),
        )

    wait_for(lambda: refusals()[0] >= 2 and refusals()[1] >= 1, 10, "the refusals' counts")
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/v2/").status_code == 404
    openmetrics = httpx.get(
        f"http://127.0.0.1:{metrics_port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


# Counted only when such a thing happens, which this test does not make happen: an image
# expired by a lifecycle policy or the size cap, a vulnerability scan.
_EVENT_ONLY = {"pullthrough_lifecycle_expired_images_total", "pullthrough_scans_total"}


def test_every_metric_the_dashboard_and_alerts_read_is_in_a_real_scrape(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        {"workers": 2, "lifecycle": {"interval": "1s", "max_size": "10GiB"}},
    )
    # Docker Hub's rate-limit headers on manifest answers.
    cache.proxy.extra_headers(
        MANIFEST_PATH, {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
    )
    image = fixture_images.oci_app
    # A cold manifest starts its blobs filling (eager fill); then a client pulls them.
    manifest = cache.get(f"/v2/{RULE}/{image.repo}/manifests/{image.tag}", headers=ACCEPT)
    assert manifest.status_code == 200
    for blob in image.blobs:
        assert cache.get(f"/v2/{RULE}/{image.repo}/blobs/{blob.digest}").status_code == 200
    assert cache.get("/v2/up/nothing/here/manifests/latest").status_code == 404

    used = metric_names(dashboard_queries() + alert_queries()) - _EVENT_ONLY
    last: list[Scrape] = []

    def all_there() -> bool:
        last[:] = [scrape(cache.url("/metrics"))]
        return used <= last[0].families

    with contextlib.suppress(AssertionError):
        wait_for(all_there, 30, "every metric to be in the scrape")
    assert used - last[0].families == set()
    found = last[0]
    assert found.value("pullthrough_upstream_ratelimit_remaining", rule=RULE) == 76
    assert found.value("pullthrough_upstream_ratelimit_limit", rule=RULE) == 100
    assert found.value("pullthrough_lifecycle_runs_total", result="ok") >= 1
    assert found.value("pullthrough_storage_max_bytes") == 10 * 1024**3


def test_metrics_off_counts_nothing_and_has_no_page(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], {"metrics": False}
    )
    assert cache.get("/v2/").status_code == 200
    page = cache.get("/metrics")
    assert page.status_code == 404
    assert "metrics are off (metrics: false)" in page.json()["errors"][0]["message"]
    assert not (cache.server.data_dir / "tmp" / "metrics").exists()
