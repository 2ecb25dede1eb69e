"""The admin REST API under /api/v1: JSON in and out, described by /api/v1/openapi.json.

Every answer under /api/v1, errors included, is the admin JSON format (`errors.py`), never the
OCI error body the registry API uses.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from pullthrough.api.access import AccessControl
from pullthrough.api.admin.auth import require_admin
from pullthrough.api.admin.context import ADMIN_KEY, AdminServices, services
from pullthrough.api.admin.errors import (
    AdminError,
    MethodNotAllowed,
    NotFound,
    error_response,
    from_registry_error,
)
from pullthrough.api.admin.openapi import openapi_document
from pullthrough.api.admin.operations import API_ROOT, OPERATIONS, Handler
from pullthrough.api.request_ids import request_id_of
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import RegistryError

__all__ = ["API_ROOT", "add_admin_routes"]

log = logging.getLogger(__name__)

OPENAPI_PATH = "/openapi.json"


def admin_endpoint(handler: Handler, *, public: bool = False) -> Handler:
    """`handler` behind the admin check, with every failure rendered in the admin format."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            if not public:
                await require_admin(request, services(request).access)
            return await handler(request)
        except AdminError as error:
            return error_response(error)
        except RegistryError as error:  # raised by code shared with the registry API
            return error_response(from_registry_error(error))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("admin API error", extra={"request_id": request_id_of(request)})
            return error_response(
                AdminError(
                    f"internal error; quote request id {request_id_of(request)} when reporting"
                )
            )

    return endpoint


def _refuse_method(allowed: list[str]) -> Handler:
    allow = ", ".join(sorted(allowed))

    async def refuse(request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {request.path[:200]}; use {allow}",
            headers={"Allow": allow},
        )

    return admin_endpoint(refuse, public=True)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound(
        f"no admin API endpoint at {request.path[:200]!r}; {API_ROOT}{OPENAPI_PATH} lists them"
    )


async def _openapi(_request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


def add_admin_routes(
    app: web.Application,
    cache_key: web.AppKey[PullThroughCache],
    access_key: web.AppKey[AccessControl],
) -> None:
    """Route /api/v1 on `app`; handlers use the cache and access control the application
    holds under `cache_key` and `access_key` (the latter absent when auth is off)."""
    methods: dict[str, list[str]] = {}
    for operation in OPERATIONS:
        path = API_ROOT + operation.path
        endpoint = admin_endpoint(operation.handler, public=not operation.admin_only)
        app.router.add_route(operation.method, path, endpoint)
        methods.setdefault(path, []).append(operation.method)
    openapi_path = API_ROOT + OPENAPI_PATH
    app.router.add_route("GET", openapi_path, admin_endpoint(_openapi, public=True))
    methods[openapi_path] = ["GET"]
    # Registered after each path's own methods, so only the others reach it.
    for path, allowed in methods.items():
        app.router.add_route("*", path, _refuse_method(allowed))
    missing = admin_endpoint(_not_found, public=True)
    app.router.add_route("*", API_ROOT, missing)
    app.router.add_route("*", API_ROOT + "/{tail:(?s:.*)}", missing)

    async def open_services(app: web.Application) -> None:
        # After the cache's cleanup context (the first startup step) has opened the cache.
        app[ADMIN_KEY] = AdminServices.open(app[cache_key], app.get(access_key))

    app.on_startup.append(open_services)
