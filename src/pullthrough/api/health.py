"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: storage and metadata)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from pullthrough.cache.service import PullThroughCache

log = logging.getLogger(__name__)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readiness(cache: PullThroughCache) -> web.Response:
    checks: dict[str, str] = {}
    for name, probe in (("metadata", cache.metadata.ping), ("storage", cache.driver.ping)):
        try:
            async with asyncio.timeout(5):
                await probe()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"failed: {exc}"
    ready = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
