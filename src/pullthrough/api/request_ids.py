"""What a request is known by in log lines and error replies: its id (api/middleware.py gives
it), kept on the request under a typed key. What the handlers learn on the way (who asked, for
which repository, what the cache did) goes to the request's trace (telemetry/tracing.py)."""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    return request.get(REQUEST_ID) or ""
