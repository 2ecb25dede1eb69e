"""One logical request to an upstream: authentication, redirects, retries, failures.

`UpstreamTransport` sends a request as the upstream's auth asks (answering a 401 once), follows
redirects by hand so `Authorization` never reaches another host, retries transient failures with
backoff, and sends nothing while the upstream's 429 `Retry-After` runs (throttle.py, which also
records rate-limit headers). What the responses mean is the registry client's
business (client.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, TypeVar

import aiohttp
from yarl import URL

from pullthrough.errors import (
    NameUnknown,
    RegistryError,
    TooManyRequests,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.upstream.auth import UpstreamAuth
from pullthrough.upstream.challenge import parse_challenges
from pullthrough.upstream.faults import (
    ERROR_BODY_LIMIT,
    Transient,
    UpstreamName,
    UpstreamTooManyRequests,
    read_at_most,
    status_error,
    translate_exception,
    unauthorized_message,
)
from pullthrough.upstream.health import HealthSink
from pullthrough.upstream.observer import RequestObserver
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.retries import RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.throttle import Throttle

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
# How much of a response body may wait unread before the connection stops reading (aiohttp
# pauses at twice this). aiohttp's 64 KiB default pauses a fast blob download many times a
# second; this is enough to keep it streaming while the spool writer catches up.
READ_BUFFER_BYTES = 1 << 20
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

T = TypeVar("T")


class UpstreamTransport:
    """Requests to one upstream, over a shared session, as its `throttle` allows."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream: UpstreamName,
        origin: URL,
        auth: UpstreamAuth,
        *,
        timeouts: UpstreamTimeouts,
        retry: RetryPolicy,
        throttle: Throttle,
        health: HealthSink | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.throttle = throttle
        self._health = health
        self._observer = observer
        self._session = session
        self._upstream = upstream
        self._origin = origin
        self._auth = auth
        self._timeouts = timeouts
        self._retry = retry

    @property
    def rate_limit(self) -> RateLimitState:
        """The last quota the upstream reported."""
        return self.throttle.rate_limit

    async def call(self, doing: str, attempt: Callable[[], Awaitable[T]], total: float | None) -> T:
        """`attempt()` until it succeeds, fails for good, or `retry.attempts` transient failures."""
        try:
            result = await self._attempts(doing, attempt, total)
        except (UpstreamUnavailable, UpstreamTimeout, TooManyRequests) as error:
            self._report(error)
            raise
        except RegistryError:
            self._report(None)  # an answer, such as a 404
            raise
        self._report(None)
        return result

    def _report(self, error: RegistryError | None) -> None:
        if self._health is None:
            return
        if error is None:
            self._health.succeeded(self._upstream.name)
        else:
            self._health.failed(self._upstream.name, error.message)

    async def _attempts(
        self, doing: str, attempt: Callable[[], Awaitable[T]], total: float | None
    ) -> T:
        attempts = max(1, self._retry.attempts)
        for number in range(1, attempts + 1):
            try:
                try:
                    return await attempt()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = translate_exception(
                        exc, self._upstream, doing, self._timeouts, total=total
                    )
                    raise error from exc
            except Transient as transient:
                if number == attempts:
                    final = transient.error
                    if attempts > 1:
                        final = type(final)(
                            f"{final.message} (gave up after {attempts} attempts)",
                            detail=final.detail,
                            headers=final.headers,
                        )
                    raise final from transient.__cause__
                delay = self._retry.delay(number)
                logger.warning(
                    "%s (attempt %d of %d); retrying in %.2fs",
                    transient.error.message,
                    number,
                    attempts,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def open(
        self,
        method: str,
        url: URL,
        repo: str,
        headers: Mapping[str, str],
        budget: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """The final response to `method url`, authenticated as the upstream asks; the caller
        releases it. A 401 is answered once; a second 401 means the repository is out of reach.
        While the upstream's 429 `Retry-After` runs, nothing is sent: UpstreamTooManyRequests.
        """
        await self.throttle.check()
        authorization = await self._auth.authorization(repo)
        answered = False
        while True:
            response = await self._follow(method, url, headers, authorization, budget)
            # Only the upstream's own 401 is a challenge for us; a CDN's is just an error.
            if response.status != 401 or response.url.origin() != self._origin:
                self._auth.answered(authorization)
                return response
            challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
            await _discard(response)
            if not answered:
                self._auth.refused(repo, authorization)
                authorization = await self._auth.answer(challenges, repo)
                answered = authorization is not None
                if answered:
                    continue
            raise NameUnknown(
                unauthorized_message(self._upstream, repo, self._auth.credential),
                detail={"upstream": self._upstream.name, "status": 401},
            )

    async def _follow(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        authorization: str | None,
        budget: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send, following up to MAX_REDIRECTS redirects by hand: aiohttp would carry our
        `Authorization` to the CDN host a blob redirect points at."""
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization is not None and url.origin() == self._origin:
                sent["Authorization"] = authorization
            started = time.perf_counter()
            try:
                response = await self._session.request(
                    method,
                    url,
                    headers=sent,
                    allow_redirects=False,
                    raise_for_status=False,  # whatever the session's default: we map statuses
                    timeout=budget,
                    # Digests are over the bytes as stored; never let a Content-Encoding alter
                    # them.
                    auto_decompress=False,
                    read_bufsize=READ_BUFFER_BYTES,
                )
            except (aiohttp.ClientError, TimeoutError):
                if self._observer is not None:
                    seconds = time.perf_counter() - started
                    self._observer.answered(self._upstream, method, url, None, seconds, None)
                raise
            if self._observer is not None:
                seconds = time.perf_counter() - started
                self._observer.answered(
                    self._upstream, method, url, response.status, seconds, response.headers
                )
            try:
                await self.throttle.observe(response.status, response.headers)
            except BaseException:
                response.close()
                raise
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            await _discard(response)
            url = response.url.join(URL(location))
        raise UpstreamInvalid(
            f"{self._upstream} redirected more than {MAX_REDIRECTS} times for {url.path}"
        )

    async def fail(
        self,
        response: aiohttp.ClientResponse,
        what: str,
        repo: str,
        missing: type[RegistryError],
    ) -> NoReturn:
        """Raise the error `response`'s status means for `what` (`missing` for a plain 404)."""
        body = b"" if response.method == "HEAD" else await read_at_most(response, ERROR_BODY_LIMIT)
        error = status_error(
            response.status,
            response.headers,
            body,
            upstream=self._upstream,
            what=what,
            repo=repo,
            missing=missing,
            credential=self._auth.credential,
        )
        if isinstance(error, UpstreamTooManyRequests):
            # The throttle blocked the upstream when the 429 arrived; say until when.
            raise self.throttle.refusal(error.message)
        raise error


async def _discard(response: aiohttp.ClientResponse) -> None:
    """Release a response we do not want the body of (401, redirect). Reading a small body to
    the end lets the connection be reused; a large one is cut off by closing the connection."""
    declared = response.content_length
    try:
        if response.method != "HEAD" and (declared is None or declared <= ERROR_BODY_LIMIT):
            body = await read_at_most(response, ERROR_BODY_LIMIT)
            if len(body) > ERROR_BODY_LIMIT:
                response.close()
                return
    except BaseException:
        response.close()
        raise
    response.release()
