"""The id a request is known by in log lines and error replies (api/middleware.py gives it)."""

from __future__ import annotations

from aiohttp import web


def request_id_of(request: web.Request) -> str:
    return str(request.get("request_id", ""))
