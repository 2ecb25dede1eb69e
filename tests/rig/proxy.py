"""A counting, fault-injecting reverse proxy between pullthrough and its upstream registry.

Every request is forwarded as is (the client's Host header included, so distribution builds
`Location` URLs that point back at the proxy) and the response streamed back unchanged, unless a
fault configured by the test says otherwise. The counter lets a test assert how many upstream
requests a scenario cost; faults simulate what upstreams do to caches in the wild.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.rig.background import BackgroundApp
from tests.rig.lifecycle import Started

_CHUNK = 1024 * 1024
# RFC 9110 §7.6.1 connection-specific fields, plus those aiohttp sets itself for each hop.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)

FaultKind = Literal["corrupt", "fail", "drop_after", "delay", "extra_headers", "throttle"]


@dataclass
class ProxiedRequest:
    """One request the proxy saw; `status` is what the client was answered (None if dropped
    before headers), `delayed` how many seconds the proxy held it before forwarding it."""

    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    status: int | None = None
    delayed: float = 0.0


@dataclass
class Fault:
    """A fault for requests whose path matches `pattern`, for `remaining` more of them (None =
    unlimited)."""

    kind: FaultKind
    pattern: re.Pattern[str]
    remaining: int | None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    nbytes: int = 0
    seconds: float = 0.0


@dataclass
class _Plan:
    """The faults one request gets: at most one of each kind."""

    faults: dict[FaultKind, Fault] = field(default_factory=dict)

    def get(self, kind: FaultKind) -> Fault | None:
        return self.faults.get(kind)


class CountingProxy(Started):
    """A reverse proxy to `target_url` on a free 127.0.0.1 port, run in a background thread.

    Fault methods may be called from the test thread while requests are in flight.
    """

    def __init__(self, target_url: str, *, port: int | None = None) -> None:
        self.target_url = target_url.rstrip("/")
        self.entries: list[ProxiedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._app = BackgroundApp(self._make_app, port)

    @property
    def url(self) -> str:
        return self._app.url

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._app.port}"

    @property
    def port(self) -> int:
        return self._app.port

    def start(self) -> None:
        self._app.start()

    def stop(self) -> None:
        self._app.stop()

    # --- counting -------------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far, in arrival order."""
        with self._lock:
            return [(entry.method, entry.path) for entry in self.entries]

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        path_regex: str | None = None,
    ) -> int:
        """How many requests match all the given filters."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        return sum(
            1
            for m, path in self.requests
            if (method is None or m == method.upper())
            and (path_contains is None or path_contains in path)
            and (pattern is None or pattern.search(path))
        )

    def reset(self) -> None:
        """Forget the recorded requests (faults stay)."""
        with self._lock:
            self.entries.clear()

    # --- faults ---------------------------------------------------------------------------

    def corrupt(self, path_regex: str, times: int | None = None) -> None:
        """Flip a byte in the response body, keeping its length."""
        self._add(Fault("corrupt", re.compile(path_regex), times))

    def fail(
        self,
        path_regex: str,
        status: int,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `status` (with `headers`, e.g. Retry-After) without contacting upstream."""
        self._add(
            Fault("fail", re.compile(path_regex), times, status=status, headers=headers or {})
        )

    def drop_after(self, path_regex: str, nbytes: int, times: int | None = None) -> None:
        """Send the headers and the first `nbytes` of the body, then close the connection."""
        self._add(Fault("drop_after", re.compile(path_regex), times, nbytes=nbytes))

    def delay(self, path_regex: str, seconds: float, times: int | None = None) -> None:
        """Wait `seconds` before forwarding the request."""
        self._add(Fault("delay", re.compile(path_regex), times, seconds=seconds))

    def throttle(self, path_regex: str, bytes_per_second: int, times: int | None = None) -> None:
        """Send the response body no faster than `bytes_per_second`."""
        self._add(Fault("throttle", re.compile(path_regex), times, nbytes=bytes_per_second))

    def extra_headers(
        self, path_regex: str, headers: dict[str, str], times: int | None = None
    ) -> None:
        """Add response headers (e.g. `ratelimit-remaining`)."""
        self._add(Fault("extra_headers", re.compile(path_regex), times, headers=dict(headers)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _plan(self, request: web.Request) -> tuple[ProxiedRequest, _Plan]:
        """Record the request and claim one use of the first live fault of each kind."""
        entry = ProxiedRequest(request.method, request.path, request.query_string, request.headers)
        plan = _Plan()
        with self._lock:
            self.entries.append(entry)
            for fault in self._faults:
                if fault.kind in plan.faults or fault.remaining == 0:
                    continue
                if fault.pattern.search(request.path):
                    plan.faults[fault.kind] = fault
                    if fault.remaining is not None:
                        fault.remaining -= 1
        return entry, plan

    # --- serving --------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.cleanup_ctx.append(_client_session)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        entry, plan = self._plan(request)
        failure = plan.get("fail")
        if failure is not None:
            entry.status = failure.status
            body = b"" if request.method == "HEAD" else _error_body(failure.status)
            return web.Response(
                status=failure.status,
                body=body,
                headers={"Content-Type": "application/json", **failure.headers},
            )
        delay = plan.get("delay")
        if delay is not None:
            entry.delayed = delay.seconds
            await asyncio.sleep(delay.seconds)
        session = request.app[_SESSION]
        try:
            async with session.request(
                request.method,
                self.target_url + request.path_qs,
                headers=_forwarded(request.headers),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                auto_decompress=False,
                # Forward only what the client sent: no added Accept-Encoding or User-Agent.
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            ) as upstream:
                return await self._relay(request, upstream, entry, plan)
        except aiohttp.ClientConnectionError:
            # The upstream is down (a test stopped it): answer as a gateway would.
            if entry.status is not None:
                raise
            entry.status = 502
            return web.Response(status=502, text="upstream unreachable")

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        entry: ProxiedRequest,
        plan: _Plan,
    ) -> web.StreamResponse:
        headers = _forwarded(upstream.headers)
        extra = plan.get("extra_headers")
        if extra is not None:
            headers.update(extra.headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers)
        entry.status = upstream.status
        await response.prepare(request)
        chunks = _chunks(upstream)
        corrupt = plan.get("corrupt")
        if corrupt is not None:
            chunks = _corrupted(chunks)
        throttle = plan.get("throttle")
        if throttle is not None:
            chunks = _throttled(chunks, throttle.nbytes)
        drop = plan.get("drop_after")
        if drop is not None:
            await _send_then_drop(request, response, chunks, drop.nbytes)
            return response
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    # Opened and closed with the app, on the proxy's own loop.
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[_SESSION] = session
        yield


async def _throttled(chunks: AsyncIterator[bytes], rate: int) -> AsyncIterator[bytes]:
    # Small pieces, paced: the receiver sees a steady trickle rather than bursts.
    piece = max(1, rate // 20)
    async for chunk in chunks:
        for start in range(0, len(chunk), piece):
            yield chunk[start : start + piece]
            await asyncio.sleep(len(chunk[start : start + piece]) / rate)


def _forwarded(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP)


async def _chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in upstream.content.iter_chunked(_CHUNK):
        yield chunk


async def _corrupted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The same bytes with one flipped, in the middle of the first non-empty chunk."""
    flipped = False
    async for chunk in chunks:
        if not flipped and chunk:
            middle = len(chunk) // 2
            chunk = chunk[:middle] + bytes([chunk[middle] ^ 0xFF]) + chunk[middle + 1 :]
            flipped = True
        yield chunk


async def _send_then_drop(
    request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncIterator[bytes],
    nbytes: int,
) -> None:
    # An empty write flushes the buffered headers, so even `nbytes=0` answers with headers
    # before the drop (aiohttp otherwise holds them back until the first body bytes).
    await response.write(b"")
    sent = 0
    async for chunk in chunks:
        if sent + len(chunk) >= nbytes:
            await response.write(chunk[: nbytes - sent])
            break
        await response.write(chunk)
        sent += len(chunk)
    # Closing the transport after the write flushes what was sent, then ends the connection
    # short of the announced Content-Length: the client sees a truncated body.
    if request.transport is not None:
        request.transport.close()


def _error_body(status: int) -> bytes:
    code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
    return b'{"errors":[{"code":"' + code.encode() + b'","message":"injected by the test proxy"}]}'
