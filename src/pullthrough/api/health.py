"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: this worker serves, as
does every other, and its storage and metadata are usable)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from pullthrough.api.serving import ServingState
from pullthrough.cache.service import PullThroughCache

log = logging.getLogger(__name__)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readiness(cache: PullThroughCache, serving: ServingState) -> web.Response:
    # Starting (not every worker listens yet) or stopping (draining after SIGTERM): not ready,
    # whatever the storage says, so a load balancer sends nothing new here.
    checks: dict[str, str] = {"worker": serving.phase.value}
    for name, probe in (("metadata", cache.metadata.ping), ("storage", cache.driver.ping)):
        try:
            async with asyncio.timeout(5):
                await probe()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"failed: {exc}"
    ready = serving.ready and all(
        value == "ok" for name, value in checks.items() if name != "worker"
    )
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
