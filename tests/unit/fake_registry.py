"""A fake upstream registry and CDN for the registry client's tests (fakes only, no tests).

`FakeRegistry` plays a Distribution API server on 127.0.0.1: anonymous, Basic or Bearer auth
with its own token endpoint, scripted failures, and a request log to count what a scenario cost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from pullthrough.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from pullthrough.upstream import (
    Credential,
    RegistryClient,
    RetryPolicy,
    TokenCache,
    UpstreamTimeouts,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USERNAME = "robot"
PASSWORD = "s3cret-pw"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_bytes(tag: str = "1.0") -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2},
        "annotations": {"tag": tag},
    }
    return json.dumps(document).encode()


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """A registry whose behaviour tests change by setting attributes between calls."""

    auth: str = "anonymous"  # "anonymous", "basic" or "bearer"
    token_lifetime: int | None = 300
    token_field: str = "token"
    token_delay: float = 0.0
    private: set[str] = field(default_factory=set)  # repos that need the credential
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    referrers: dict[str, bytes] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)
    failures: list[web.StreamResponse] = field(default_factory=list)  # answered before routing
    blob_redirect: str | None = None  # base URL blobs are redirected to
    stall: float = 0.0  # seconds to sit on each request before answering
    requests: list[Seen] = field(default_factory=list)
    token_requests: list[Seen] = field(default_factory=list)
    issued: dict[str, tuple[str, bool]] = field(default_factory=dict)  # token -> scope, authed
    url: str = ""

    def add_manifest(self, repo: str, tag: str, content: bytes, media_type: str) -> str:
        digest = digest_of(content)
        self.manifests[(repo, tag)] = (content, media_type)
        self.manifests[(repo, digest)] = (content, media_type)
        return digest

    def revoke_tokens(self) -> None:
        self.issued.clear()

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeRegistry]:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/v2/{repo:.+}/manifests/{ref}", self._manifest)
        app.router.add_route("*", "/v2/{repo:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{repo:.+}/tags/list", self._tags)
        app.router.add_get("/v2/{repo:.+}/referrers/{digest}", self._referrers)
        async with TestServer(app, host="127.0.0.1") as server:
            self.url = str(server.make_url("")).rstrip("/")
            yield self

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers))
        if request.path == "/token":
            self.token_requests.append(seen)
            return await handler(request)
        self.requests.append(seen)
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.failures:
            return self._decorate(self.failures.pop(0))
        repo = request.match_info.get("repo", "")
        refusal = self._check_auth(request, repo)
        if refusal is not None:
            return self._decorate(refusal)
        return self._decorate(await handler(request))

    def _decorate(self, response: web.StreamResponse) -> web.StreamResponse:
        response.headers.update(self.extra_headers)
        return response

    def _check_auth(self, request: web.Request, repo: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if header == _basic(USERNAME, PASSWORD):
                return None
            return _error(401, "UNAUTHORIZED", "auth", {"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "bearer":
            token = header.removeprefix("Bearer ")
            scope = f"repository:{repo}:pull"
            granted = self.issued.get(token)
            if granted is not None:
                granted_scope, with_credential = granted
                if granted_scope == scope and (with_credential or repo not in self.private):
                    return None
            challenge = f'Bearer realm="{self.url}/token",service="fake-registry",scope="{scope}"'
            return _error(401, "UNAUTHORIZED", "auth", {"WWW-Authenticate": challenge})
        if repo in self.private:
            return _error(401, "UNAUTHORIZED", "auth")
        return None

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        authorization = request.headers.get("Authorization")
        if authorization is not None and authorization != _basic(USERNAME, PASSWORD):
            return _error(401, "UNAUTHORIZED", "bad credentials")
        token = f"token-{len(self.token_requests)}"
        self.issued[token] = (request.query.get("scope", ""), authorization is not None)
        body: dict[str, object] = {
            self.token_field: token,
            "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.token_lifetime is not None:
            body["expires_in"] = self.token_lifetime
        return web.json_response(body)

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["repo"], request.match_info["ref"])
        if key not in self.manifests:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        content, media_type = self.manifests[key]
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest_of(content)}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(content))
            return web.Response(headers=headers)
        return web.Response(body=content, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        if digest not in self.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        if self.blob_redirect is not None:
            raise web.HTTPTemporaryRedirect(f"{self.blob_redirect}/cdn/{digest}?sig=abc%2Bdef")
        return _serve_bytes(request, self.blobs[digest])

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        repo = request.match_info["repo"]
        if repo not in self.tags:
            return _error(404, "NAME_UNKNOWN", "repository name not known to registry")
        tags = sorted(self.tags[repo])
        last = request.query.get("last")
        if last:
            tags = [tag for tag in tags if tag > last]
        headers = {}
        if "n" in request.query:
            n = int(request.query["n"])
            if len(tags) > n:
                tags = tags[:n]
                headers["Link"] = f'</v2/{repo}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return web.json_response({"name": repo, "tags": tags}, headers=headers)

    async def _referrers(self, request: web.Request) -> web.StreamResponse:
        body = self.referrers.get(request.match_info["digest"])
        if body is None:
            return _error(404, "NOT_FOUND", "no referrers API")
        return web.Response(body=body, headers={"Content-Type": OCI_INDEX})


class FakeCdn:
    """A second origin that blob redirects point at; records what arrived there."""

    def __init__(self, blobs: dict[str, bytes], *, refuse_head: bool = False) -> None:
        self.blobs = blobs
        self.refuse_head = refuse_head
        self.requests: list[Seen] = []
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeCdn]:
        app = web.Application()
        app.router.add_route("*", "/cdn/{digest}", self._serve)
        async with TestServer(app, host="127.0.0.1") as server:
            self.url = str(server.make_url("")).rstrip("/")
            yield self

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers))
        )
        if request.method == "HEAD" and self.refuse_head:
            return web.Response(status=403, text="SignatureDoesNotMatch")
        return _serve_bytes(request, self.blobs[request.match_info["digest"]])


def make_client(
    session: aiohttp.ClientSession,
    url: str,
    *,
    credential: Credential | None = None,
    tokens: TokenCache | None = None,
    attempts: int = 3,
    read: float = 5.0,
) -> RegistryClient:
    """A client with tiny backoffs, so retry tests stay fast."""
    return RegistryClient(
        session,
        url,
        name="fake",
        credential=credential,
        timeouts=UpstreamTimeouts(connect=2.0, read=read, total_manifest=10.0),
        retry=RetryPolicy(attempts=attempts, backoff=0.001),
        tokens=tokens,
    )


def _serve_bytes(request: web.Request, data: bytes) -> web.Response:
    headers = {"Content-Type": "application/octet-stream"}
    range_header = request.headers.get("Range")
    if range_header:
        start_text, _, end_text = range_header.removeprefix("bytes=").partition("-")
        start = int(start_text)
        end = int(end_text) if end_text else len(data) - 1
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start : end + 1], headers=headers)
    return web.Response(body=data, headers=headers)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"errors": [{"code": code, "message": message}]}, status=status, headers=headers
    )


def error_response(
    status: int, code: str = "UNKNOWN", headers: dict[str, str] | None = None
) -> web.Response:
    """A scripted failure for `FakeRegistry.failures`."""
    return _error(status, code, f"scripted {status}", headers)
