"""What a request is known by in log lines and error replies: its id (api/middleware.py gives
it), and what the handlers learn on the way (who asked, for which repository, what the cache did),
kept on the request under typed keys."""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", str)
REPOSITORY = web.RequestKey("repository", str)
CACHE_RESULT = web.RequestKey("cache_result", str)


def request_id_of(request: web.Request) -> str:
    return request.get(REQUEST_ID) or ""
