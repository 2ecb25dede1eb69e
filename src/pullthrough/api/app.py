"""The aiohttp application: routes, middleware, and the cache opened and closed with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from pullthrough.access.authn import Authenticator
from pullthrough.access.authz import Authorizer
from pullthrough.access.tokens import TokenSigner, load_or_create_key
from pullthrough.api.access import AccessControl
from pullthrough.api.ecr import LazyAwsApi
from pullthrough.api.health import healthz, readiness
from pullthrough.api.metrics import MetricsPage
from pullthrough.api.middleware import ADMIN_API_ROOT, echo_request_id, make_middleware
from pullthrough.api.peer import add_peer_routes
from pullthrough.api.registry import RegistryApi
from pullthrough.api.serving import ServingPhase, ServingState
from pullthrough.cache.service import PullThroughCache, open_cache
from pullthrough.config import Settings
from pullthrough.errors import EndpointUnknown
from pullthrough.lifecycle.keeper import SpaceKeeper
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.revisions import Revisions
from pullthrough.upstream.credentials import CredentialSource

CACHE_KEY = web.AppKey("cache", PullThroughCache)
REGISTRY_KEY = web.AppKey("registry", RegistryApi)
ACCESS_KEY = web.AppKey("access", AccessControl)
SERVING_KEY = web.AppKey("serving", ServingState)
METRICS_KEY = web.AppKey("metrics", MetricsPage)


def access_control(settings: Settings, cache: PullThroughCache) -> AccessControl:
    store = AccessStore(cache.metadata.engine)
    signer = TokenSigner(
        load_or_create_key(settings.data_dir.resolve()), service=settings.auth.service
    )
    revisions = Revisions(cache.metadata.engine)
    return AccessControl(
        config=settings.auth,
        authenticator=Authenticator(store, signer, revisions),
        authorizer=Authorizer(store, revisions),
        signer=signer,
        rules=cache.rules,
    )


async def _token(request: web.Request) -> web.StreamResponse:
    access = request.app.get(ACCESS_KEY)
    if access is None:
        raise EndpointUnknown("authentication is off (auth.enabled: false): no tokens are needed")
    return await access.issue(request)


async def _registry(request: web.Request) -> web.StreamResponse:
    return await request.app[REGISTRY_KEY].dispatch(request)


async def _readyz(request: web.Request) -> web.Response:
    return await readiness(request.app[CACHE_KEY], request.app[SERVING_KEY])


async def _metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    return await app[METRICS_KEY].serve(request, app[CACHE_KEY], app.get(ACCESS_KEY))


def build_metrics_app(main: web.Application) -> web.Application:
    """The application of the `metrics_listen` listener: `/metrics` of `main` (started), without
    authentication."""
    page = MetricsPage()

    async def metrics(request: web.Request) -> web.StreamResponse:
        return await page.serve(request, main[CACHE_KEY], None)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise EndpointUnknown(f"no endpoint at {request.raw_path[:200]!r}")


class LazyAdminApi:
    """The admin API (/api/v1), loaded at its first request: a worker that only serves pulls
    never imports its handlers, models and OpenAPI document.

    Its routes live on an application of their own, started then with the cache and access
    control of the serving application; each admin request is resolved against its router and
    handed to the handler found, with that application and the match (path parameters) as the
    request's.
    """

    def __init__(self) -> None:
        self._admin: web.Application | None = None
        self._loading = asyncio.Lock()

    async def _loaded(self, app: web.Application) -> web.Application:
        async with self._loading:
            if self._admin is None:
                from pullthrough.api.admin import add_admin_routes

                admin = web.Application()
                admin[CACHE_KEY] = app[CACHE_KEY]
                if ACCESS_KEY in app:
                    admin[ACCESS_KEY] = app[ACCESS_KEY]
                add_admin_routes(admin, CACHE_KEY, ACCESS_KEY)
                admin.freeze()
                await admin.startup()
                self._admin = admin
            return self._admin

    async def close(self, _app: web.Application) -> None:
        if self._admin is not None:
            await self._admin.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        admin = self._admin or await self._loaded(request.app)
        match = await admin.router.resolve(request)
        match.add_app(admin)
        # The same request (its body, its state) with the admin API's match: what aiohttp
        # itself does when it hands a request to the handler it resolved.
        admin_request = request.clone()
        admin_request._match_info = match
        return await match.handler(admin_request)


class LazyDashboard(LazyAdminApi):
    """The web dashboard (/ui, `api/ui/`), loaded at its first request as the admin API is:
    a worker nobody opens it on never imports its templates and pages."""

    async def _loaded(self, app: web.Application) -> web.Application:
        async with self._loading:
            if self._admin is None:
                from pullthrough.api.ui import build_dashboard

                dashboard = build_dashboard(app[CACHE_KEY], app.get(ACCESS_KEY))
                dashboard.freeze()
                await dashboard.startup()
                self._admin = dashboard
            return self._admin


def build_app(
    settings: Settings,
    credentials: CredentialSource | None = None,
    serving: ServingState | None = None,
) -> web.Application:
    """The application; `serving` is the worker's phase, which the process running the app
    moves on (without one, the app serves as soon as it starts: tests, tools)."""
    serving = serving or ServingState(ServingPhase.SERVING)
    app = web.Application(
        middlewares=[serving.middleware(), make_middleware(settings.max_header_bytes)]
    )
    app[SERVING_KEY] = serving
    app.on_response_prepare.append(echo_request_id)
    app[METRICS_KEY] = MetricsPage()

    async def cache_context(app: web.Application) -> AsyncIterator[None]:
        async with open_cache(settings, credentials) as cache:
            app[CACHE_KEY] = cache
            access = access_control(settings, cache) if settings.auth.enabled else None
            if access is not None:
                app[ACCESS_KEY] = access
            app[REGISTRY_KEY] = RegistryApi(cache, access)
            keeper_task = None
            if settings.lifecycle.interval > 0:
                keeper = SpaceKeeper(
                    cache.metadata.engine,
                    cache.driver,
                    settings.lifecycle,
                    locks=cache.locks,
                )
                keeper_task = asyncio.create_task(keeper.run_periodically(), name="lifecycle")
            try:
                yield
            finally:
                if keeper_task is not None:
                    keeper_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keeper_task

    app.cleanup_ctx.append(cache_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("GET", "/token", _token)
    app.router.add_route("POST", "/token", _token)
    app.router.add_route("*", "/v2", _registry)
    app.router.add_route("*", "/v2/{tail:.*}", _registry)
    admin_api = LazyAdminApi()
    app.on_cleanup.append(admin_api.close)
    app.router.add_route("*", ADMIN_API_ROOT, admin_api.handle)
    app.router.add_route("*", ADMIN_API_ROOT + "/{tail:(?s:.*)}", admin_api.handle)
    dashboard = LazyDashboard()
    app.on_cleanup.append(dashboard.close)
    app.router.add_route("*", "/ui", dashboard.handle)
    app.router.add_route("*", "/ui/{tail:.*}", dashboard.handle)
    add_peer_routes(app, CACHE_KEY)
    aws_api = LazyAwsApi()

    async def aws(request: web.Request) -> web.StreamResponse:
        # `aws … --endpoint-url http://host:port` posts to `/`: ECR, Secrets Manager and STS.
        access = request.app.get(ACCESS_KEY)
        answer = await aws_api.handle(request, request.app[CACHE_KEY], access)
        return answer if answer is not None else await _not_found(request)

    app.router.add_route("POST", "/", aws)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
