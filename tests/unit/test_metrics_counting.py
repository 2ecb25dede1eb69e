"""The request path's counts, kept in memory and written once a second, come out as
prometheus_client's own `inc` and `observe` would have written them; route kinds."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from pullthrough.api.middleware import route_kind
from pullthrough.telemetry.metrics import Metrics

DURATIONS = (0.0001, 0.005, 0.0051, 0.2, 0.25, 3.0, 299.0, 301.0, 1e6)


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith(("pullthrough_http_", "pullthrough_cache_", "pullthrough_served_"))
        and "_created" not in line
    ]


def test_batched_counts_are_what_observe_and_inc_write() -> None:
    batched_registry, direct_registry = CollectorRegistry(), CollectorRegistry()
    batched, direct = Metrics(batched_registry), Metrics(direct_registry)
    served = (("hit", 100), ("miss", 7), ("hit", 0), ("revalidated", 5))

    async def serve() -> None:  # in an event loop, as a worker counts: kept until the flush
        for seconds in DURATIONS:
            batched.request("blob", 200, seconds)
        batched.request("manifest", 404, 0.01)
        for result, sent in served:
            batched.served("up", "manifest", result, sent)

    asyncio.run(serve())
    labels = {"route": "blob", "code": "200"}
    assert batched_registry.get_sample_value("pullthrough_http_requests_total", labels) == 0.0
    batched.flush()
    for seconds in DURATIONS:
        direct.http_requests.labels("blob", "200").inc()
        direct.http_duration.labels("blob").observe(seconds)
    direct.http_requests.labels("manifest", "404").inc()
    direct.http_duration.labels("manifest").observe(0.01)
    for result, sent in served:
        direct.cache_requests.labels("up", "manifest", result).inc()
        source = "upstream" if result == "miss" else "cache"
        direct.served_bytes.labels("up", "manifest", source).inc(sent)
    assert exposition(batched_registry) == exposition(direct_registry)
    assert 'pullthrough_http_requests_total{code="200",route="blob"} 9.0' in exposition(
        batched_registry
    )


def test_counts_wait_for_the_flush_inside_an_event_loop() -> None:
    registry = CollectorRegistry()
    counted = Metrics(registry)

    def requests() -> float:
        value = registry.get_sample_value(
            "pullthrough_http_requests_total", {"route": "manifest", "code": "200"}
        )
        return value or 0.0

    async def serve() -> float:
        counted.request("manifest", 200, 0.001)
        counted.request("manifest", 200, 0.001)
        return requests()

    assert asyncio.run(serve()) == 0.0  # waiting, written at the next flush
    counted.flush()
    assert requests() == 2.0
    counted.request("manifest", 200, 0.001)  # no event loop: written at once
    assert requests() == 3.0


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v2/up/library/nginx/manifests/1.27", "manifest"),
        ("/v2/up/library/nginx/blobs/sha256:ab", "blob"),
        ("/v2/up/library/nginx/tags/list", "other"),
        ("/v2/", "other"),
        ("/token", "token"),
        ("/api/v1/rules", "admin"),
        ("/ui/repositories", "ui"),
        ("/metrics", "metrics"),
        ("/healthz", "other"),
    ],
)
def test_route_kinds(path: str, kind: str) -> None:
    assert route_kind(path) == kind
