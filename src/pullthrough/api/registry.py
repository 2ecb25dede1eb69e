"""The OCI Distribution pull API under /v2/: parse the path, call the cache, render."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote

from aiohttp import web

from pullthrough.access.import_check import ImportCheck, import_anything
from pullthrough.access.registry_policy.document import Principal
from pullthrough.api.access import AccessControl, scope_for
from pullthrough.api.blob_body import send_pieces
from pullthrough.api.middleware import API_VERSION_HEADERS
from pullthrough.api.ranges import parse_range
from pullthrough.cache.blobs import BlobFile, BlobRedirect, BlobStream
from pullthrough.cache.routing import Route
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import (
    EndpointUnknown,
    NameInvalid,
    PaginationNumberInvalid,
    RequestInvalid,
    Unsupported,
)
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest
from pullthrough.oci.names import validate_name
from pullthrough.telemetry.tracing import note_cache, note_principal, note_repository

_ENDPOINTS = (
    ("blob_upload", re.compile(r"^(?P<name>.+)/blobs/uploads(?:/.*)?$")),
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$")),
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
)
_READ_METHODS = ("GET", "HEAD")
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: str
    name: str
    argument: str


def parse_endpoint(raw_path: str) -> Endpoint:
    """Split a raw /v2/ path (`/v2` too); percent-escapes and dot segments are never valid in it."""
    path = raw_path.split("?", 1)[0]
    if path == "/v2":
        path = "/v2/"
    if not path.startswith("/v2/"):
        raise RequestInvalid(f"{path[:200]!r} is not a registry API path (they start /v2/)")
    rest = path[len("/v2/") :]
    if rest in ("", "_catalog"):
        return Endpoint(rest or "base", "", "")
    if "%" in rest or "/../" in f"/{rest}/" or "/./" in f"/{rest}/" or "//" in rest:
        raise NameInvalid(
            f"invalid path {path[:200]!r}: repository names have no escapes or dot segments"
        )
    for kind, pattern in _ENDPOINTS:
        match = pattern.fullmatch(rest)
        if match:
            groups = match.groupdict()
            return Endpoint(
                kind, groups["name"], groups.get("reference") or groups.get("digest") or ""
            )
    raise EndpointUnknown(f"no registry endpoint at {path[:200]!r}")


def _query_number(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) > MAX_PAGE:
        raise PaginationNumberInvalid(f"{key}={raw[:40]!r} is not a number from 0 to {MAX_PAGE}")
    return int(raw)


def _link(path: str, n: int | None, last: str) -> str:
    query = f"last={quote(last)}" if n is None else f"n={n}&last={quote(last)}"
    return f'<{path}?{query}>; rel="next"'


class RegistryApi:
    def __init__(self, cache: PullThroughCache, access: AccessControl | None = None) -> None:
        self.cache = cache
        self.access = access

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        endpoint = parse_endpoint(request.raw_path)
        if endpoint.kind == "blob_upload" or request.method not in _READ_METHODS:
            raise Unsupported(
                f"{request.method} is not supported: pullthrough is a read-only pull-through "
                "cache (push to the upstream registry instead)"
            )
        scope = scope_for(endpoint.kind, endpoint.name)
        caller = None
        if self.access is not None:
            caller = await self.access.caller(request, scope)
            note_principal(caller.principal.name)
        if endpoint.kind == "base":
            return web.json_response({}, headers=API_VERSION_HEADERS)
        if endpoint.kind == "_catalog":
            if self.access is not None and caller is not None:
                await self.access.require_catalog(caller.principal)
                self.access.check_token_scope(request, caller, scope)
            return await self.catalog(request, caller.principal if caller else None)
        validate_name(endpoint.name)
        router = await self.cache.rules.router()
        route = router.resolve(endpoint.name, request.query.get("ns"))
        note_repository(route.repository)
        may_import: ImportCheck = import_anything
        if self.access is not None and caller is not None:
            may_import = await self.access.pull_check(caller.principal, route.repository)
            self.access.check_token_scope(request, caller, scope)
        if endpoint.kind == "manifest":
            return await self.manifest(request, route, endpoint.argument, may_import)
        if endpoint.kind == "blob":
            return await self.blob(request, route, Digest.parse(endpoint.argument), may_import)
        if endpoint.kind == "tags":
            return await self.tags(request, route, endpoint.name)
        return await self.referrers(request, route, Digest.parse(endpoint.argument))

    async def catalog(self, request: web.Request, principal: Principal | None) -> web.Response:
        n = _query_number(request, "n")
        last = request.query.get("last")
        may_list = None
        if self.access is not None and principal is not None:
            # Only what the caller may pull is listed.
            may_list = functools.partial(self.access.may_list, principal)
        page = await self.cache.listings.catalog(n, last, may_list)
        headers = dict(API_VERSION_HEADERS)
        if page.more:
            headers["Link"] = _link("/v2/_catalog", n, page.names[-1]) if page.names else ""
        return web.json_response({"repositories": page.names}, headers=headers)

    async def manifest(
        self, request: web.Request, route: Route, reference: str, may_import: ImportCheck
    ) -> web.Response:
        # Clients such as skopeo send one Accept line per media type.
        accepted = mediatypes.parse_accept(", ".join(request.headers.getall("Accept", [])))
        answer = await self.cache.manifests.pull(
            route, reference, accepted, may_import, with_body=request.method == "GET"
        )
        note_cache(answer.cache)
        manifest = answer.manifest
        headers = {
            **API_VERSION_HEADERS,
            "Docker-Content-Digest": manifest.digest,
            "Content-Type": manifest.media_type,
            "ETag": f'"{manifest.digest}"',
            "X-Pullthrough-Cache": answer.cache,
        }
        if answer.stale_since is not None:
            headers["Warning"] = (
                f'110 pullthrough "Response is stale: upstream unavailable; last checked '
                f'{formatdate(answer.stale_since, usegmt=True)}"'
            )
        # aiohttp sends the Content-Length of the body but not the body itself for HEAD.
        return web.Response(body=manifest.content, headers=headers)

    async def blob(
        self, request: web.Request, route: Route, digest: Digest, may_import: ImportCheck
    ) -> web.StreamResponse:
        wanted = parse_range(request.headers.get("Range"))
        headers = {
            **API_VERSION_HEADERS,
            "Docker-Content-Digest": str(digest),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000, immutable",
        }
        if request.method == "HEAD":
            size = await self.cache.blobs.head(route, digest, may_import)
            return web.Response(headers={**headers, "Content-Length": str(size)})
        answer = await self.cache.blobs.open(route, digest, may_import)
        headers["X-Pullthrough-Cache"] = answer.cache
        note_cache(answer.cache)
        storage = self.cache.settings.storage
        redirect_ttl = storage.redirect_ttl if storage.redirect_blobs else None
        body = await self.cache.blobs.send(answer, wanted, redirect_ttl)
        if isinstance(body, BlobRedirect):
            return _redirect(body, headers)
        if isinstance(body, BlobFile):
            return web.FileResponse(body.path, headers=headers)
        return await _stream(request, body, headers)

    async def tags(self, request: web.Request, route: Route, name: str) -> web.Response:
        n = _query_number(request, "n")
        last = request.query.get("last") or None
        page = await self.cache.listings.tags(route, n, last)
        headers = dict(API_VERSION_HEADERS)
        if page.from_cache:
            headers["X-Pullthrough-Cache"] = "stale"
        if page.more and page.tags:
            headers["Link"] = _link(f"/v2/{name}/tags/list", n, page.tags[-1])
        return web.json_response({"name": name, "tags": page.tags}, headers=headers)

    async def referrers(self, request: web.Request, route: Route, digest: Digest) -> web.Response:
        artifact_type = request.query.get("artifactType") or None
        index = await self.cache.listings.referrers(route, digest, artifact_type)
        headers = {**API_VERSION_HEADERS, "Content-Type": mediatypes.OCI_INDEX}
        if index.filtered:
            headers["OCI-Filters-Applied"] = "artifactType"
        response = web.Response(body=index.content, headers=headers)
        return response


def _redirect(redirect: BlobRedirect, headers: dict[str, str]) -> web.Response:
    """307 to the stored object: the client repeats its GET (and Range) there. The URL
    expires, so the answer is not to be kept."""
    kept = {k: v for k, v in headers.items() if k not in ("Content-Type", "Cache-Control")}
    return web.Response(
        status=307, headers={**kept, "Location": redirect.url, "Cache-Control": "no-store"}
    )


async def _stream(
    request: web.Request, stream: BlobStream, headers: dict[str, str]
) -> web.StreamResponse:
    """Send a growing blob's bytes as they arrive; a failing fill cuts the connection short of
    the last byte, so the client never has the whole wrong blob."""
    status = 200
    if stream.content_range is not None:
        status = 206
        headers["Content-Range"] = stream.content_range
    response = web.StreamResponse(status=status, headers=headers)
    if stream.length is not None:
        response.content_length = stream.length
    await response.prepare(request)
    await send_pieces(request, response, stream.pieces())
    return response
