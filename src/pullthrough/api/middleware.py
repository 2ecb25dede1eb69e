"""Every request: a request id, a header size limit, OCI error bodies, one JSON log line, and
its count and duration in the metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pullthrough.api.request_ids import REQUEST_ID
from pullthrough.errors import HeadersTooLarge, RegistryError
from pullthrough.telemetry import metrics
from pullthrough.telemetry.logs import request_line
from pullthrough.telemetry.tracing import TRACE, RequestTrace

log = logging.getLogger("pullthrough.access")

REQUEST_ID_HEADER = "X-Request-Id"
API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The admin API's root (api/admin/operations.py API_ROOT), written here so that serving the
# registry does not load the admin API.
ADMIN_API_ROOT = "/api/v1"


def error_response(error: RegistryError, request_id: str) -> web.Response:
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        headers={**API_VERSION_HEADERS, **error.headers, REQUEST_ID_HEADER: request_id},
        content_type="application/json",
    )


def route_kind(path: str) -> str:
    """The kind of route a path is, as the request metrics label it (a bounded set)."""
    if path.startswith("/v2/"):
        if "/blobs/" in path:
            return "blob"
        if "/manifests/" in path:
            return "manifest"
        return "other"
    if path.startswith(ADMIN_API_ROOT):
        return "admin"
    if path == "/token":
        return "token"
    if path.startswith("/ui"):
        return "ui"
    if path == "/metrics":
        return "metrics"
    return "other"


def log_request(request: web.Request, trace: RequestTrace, status: int, seconds: float) -> None:
    """The request's one log line: its fields are gathered here, formatted by `request_line`
    and written by the log's own thread (telemetry/logs.py). Registry API paths keep their
    query (`ns=`, `n=`, `last=`: which upstream a containerd mirror asked for, which page); any
    other path's query is left out, since it may carry a secret (a token request's, an API key
    in a form)."""
    method, path = request.method, request.raw_path
    if not path.startswith("/v2/"):
        path = path.partition("?")[0]
    request_line(
        log,
        f"{method} {path[:512]} {status}",
        {
            "request_id": trace.request_id,
            "method": method,
            "path": path[:512],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "remote": request.remote,
            "principal": trace.principal,
            "repository": trace.repository,
            "rule": trace.rule,
            "cache": trace.cache,
            "bytes": trace.sent,
        },
    )


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """The request id in every response's headers, as they are sent: a response the handler
    streams itself (a blob) has sent them before the middleware sees it."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


def make_middleware(max_header_bytes: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex[:16]
        request[REQUEST_ID] = request_id
        trace = RequestTrace(request_id)
        traced = TRACE.set(trace)
        started = time.perf_counter()
        status = 500
        try:
            header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
            if header_bytes > max_header_bytes:
                raise HeadersTooLarge(
                    f"request headers are {header_bytes} bytes; at most {max_header_bytes} "
                    "are accepted (max_header_bytes)"
                )
            response = await handler(request)
            response.headers[REQUEST_ID_HEADER] = request_id
            status = response.status
            return response
        except RegistryError as error:
            if request.path.startswith(ADMIN_API_ROOT):
                # Only the header check gets here from the admin API, whose errors have
                # their own shape (api/admin/errors.py).
                from pullthrough.api.admin.errors import error_response as admin_error_response
                from pullthrough.api.admin.errors import from_registry_error

                admin_error = from_registry_error(error)
                status = admin_error.status
                response = admin_error_response(admin_error)
                response.headers[REQUEST_ID_HEADER] = request_id
                return response
            status = error.status
            return error_response(error, request_id)
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (ConnectionResetError, OSError) as exc:
            status = 499
            log.info("client went away: %s", exc, extra={"request_id": request_id})
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            internal = RegistryError(
                f"internal error; quote request id {request_id} when reporting"
            )
            return error_response(internal, request_id)
        finally:
            TRACE.reset(traced)
            seconds = time.perf_counter() - started
            counted = metrics.current()
            if counted is not None:
                counted.request(route_kind(request.path), status, seconds)
            if log.isEnabledFor(logging.INFO):
                log_request(request, trace, status, seconds)

    return middleware
