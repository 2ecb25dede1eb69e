"""Which client request caused what: the request id, set for the task serving a request (and
the tasks it starts), what the handlers learn while serving it (who asked, for which
repository, what the cache did: for its log line), and the upstream requests it led to,
counted and logged with that id."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from pullthrough.telemetry import metrics
from pullthrough.telemetry.logs import request_line
from pullthrough.upstream.faults import UpstreamName
from pullthrough.upstream.ratelimit import RateLimitState

log = logging.getLogger("pullthrough.upstream.requests")


@dataclass(slots=True)
class RequestTrace:
    """What the request log line says about the request being served, filled in by the code
    that knows: its id (api/middleware.py), and, once the cache served it, the rule, the cache
    result (hit, miss, stale, revalidated) and the bytes of content sent."""

    request_id: str
    principal: str | None = None
    repository: str | None = None
    rule: str | None = None
    cache: str | None = None
    sent: int | None = None


# The request being served; a fill or eager fill started by a request keeps it (tasks copy the
# context they were created in), so its upstream requests carry that request's id.
TRACE: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "pullthrough_request", default=None
)


def note_principal(name: str) -> None:
    """The request being served is made by the principal `name`."""
    trace = TRACE.get()
    if trace is not None:
        trace.principal = name


def note_repository(repository: str) -> None:
    """The request being served is for `repository` (with its rule's prefix)."""
    trace = TRACE.get()
    if trace is not None:
        trace.repository = repository


def note_cache(result: str) -> None:
    """The cache's answer to the request being served is a hit, miss, stale or revalidated one,
    even if its body never gets to `record_served` (a stream cut short)."""
    trace = TRACE.get()
    if trace is not None:
        trace.cache = result


def record_served(rule: str, kind: str, result: str, sent: int) -> None:
    """A manifest or blob (`kind`) served under `rule` as a hit, miss, stale or revalidated
    answer, `sent` bytes of it: counted, and said in the request's log line."""
    counted = metrics.current()
    if counted is not None:
        counted.served(rule, kind, result, sent)
    trace = TRACE.get()
    if trace is not None:
        trace.rule, trace.cache, trace.sent = rule, result, sent


# Headers in which registries and their CDNs name their own request ids, in that order.
UPSTREAM_ID_HEADERS = ("X-Request-Id", "Docker-Request-Id", "x-amz-request-id", "x-amz-cf-id")


class UpstreamRequests:
    """The registry clients' `RequestObserver`: each upstream request counted, its rate-limit
    headers kept as gauges, and one log line naming the client request that caused it and
    upstream's own id for it. Only the host and path are logged: a redirect's query may carry
    a signature, and request headers (Authorization) are never looked at."""

    def answered(
        self,
        upstream: UpstreamName,
        method: str,
        url: URL,
        status: int | None,
        seconds: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        counted = metrics.current()
        if counted is not None:
            code = "error" if status is None else str(status)
            counted.upstream_answered(upstream.name, upstream.host, method, code, seconds)
            if headers is not None and "ratelimit-remaining" in headers:
                quota = RateLimitState.from_headers(headers)
                if quota is not None and quota.remaining is not None:
                    counted.ratelimit_remaining.labels(upstream.name).set(quota.remaining)
                if quota is not None and quota.limit is not None:
                    counted.ratelimit_limit.labels(upstream.name).set(quota.limit)
        if not log.isEnabledFor(logging.INFO):
            return
        upstream_id = None
        if headers is not None:
            for name in UPSTREAM_ID_HEADERS:
                upstream_id = headers.get(name)
                if upstream_id is not None:
                    break
        trace = TRACE.get()
        request_line(
            log,
            f"upstream {method} {url.host}{url.path[:200]} {status or 'no response'}",
            {
                "request_id": trace.request_id if trace is not None else None,
                "rule": upstream.name,
                "upstream_host": url.host,
                "method": method,
                "path": url.path[:512],
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "upstream_request_id": upstream_id[:128] if upstream_id else None,
            },
        )
