"""The aiohttp application: routes, middleware, and the cache opened and closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from pullthrough.api.health import healthz, readiness
from pullthrough.api.middleware import make_middleware
from pullthrough.api.registry import RegistryApi
from pullthrough.cache.service import PullThroughCache, open_cache
from pullthrough.config import Settings
from pullthrough.errors import EndpointUnknown
from pullthrough.upstream.credentials import CredentialSource

CACHE_KEY = web.AppKey("cache", PullThroughCache)
REGISTRY_KEY = web.AppKey("registry", RegistryApi)


async def _registry(request: web.Request) -> web.StreamResponse:
    return await request.app[REGISTRY_KEY].dispatch(request)


async def _readyz(request: web.Request) -> web.Response:
    return await readiness(request.app[CACHE_KEY])


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise EndpointUnknown(f"no endpoint at {request.raw_path[:200]!r}")


def build_app(settings: Settings, credentials: CredentialSource | None = None) -> web.Application:
    app = web.Application(middlewares=[make_middleware(settings.max_header_bytes)])

    async def cache_context(app: web.Application) -> AsyncIterator[None]:
        async with open_cache(settings, credentials) as cache:
            app[CACHE_KEY] = cache
            app[REGISTRY_KEY] = RegistryApi(cache)
            yield

    app.cleanup_ctx.append(cache_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_route("*", "/v2", _registry)
    app.router.add_route("*", "/v2/{tail:.*}", _registry)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
