"""How upstream failures become pullthrough errors that name the upstream, in one place.

aiohttp's exceptions and an upstream's error statuses are translated here, once, into the
`pullthrough.errors` classes, with messages that say which upstream failed doing what. A failure
worth retrying travels as `Transient` until the retry loop gives up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from pullthrough.errors import (
    Denied,
    NameUnknown,
    RegistryError,
    TooManyRequests,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.upstream.credentials import Credential
from pullthrough.upstream.retries import UpstreamTimeouts, parse_retry_after

# Upstream error bodies are read only this far: enough for `{"errors": [...]}`, not a web page.
ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class UpstreamName:
    """An upstream as messages name it: `upstream docker-hub (registry-1.docker.io)`."""

    name: str
    host: str

    def __str__(self) -> str:
        return f"upstream {self.name} ({self.host})"


class UpstreamTooManyRequests(TooManyRequests):
    """The upstream answered 429; `retry_after` is how many seconds it asked us to wait."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, detail=detail, headers=headers)
        self.retry_after = retry_after


class Transient(Exception):
    """A failure that a later attempt may not repeat (connection error, 5xx); carries the error to
    raise once attempts run out."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.message)
        self.error = error


def translate_exception(
    exc: Exception,
    upstream: UpstreamName,
    doing: str,
    timeouts: UpstreamTimeouts,
    *,
    total: float | None = None,
) -> RegistryError | Transient:
    """The error for an aiohttp (or timeout) exception raised while `doing` something.

    Connection failures are transient; a read timeout is not, because retrying it would multiply
    an already long wait and the cache can serve a stale copy instead.
    """
    detail = {"upstream": upstream.name}
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Transient(
            UpstreamTimeout(
                f"{upstream} timed out after {_seconds(timeouts.connect)} connecting, {doing}",
                detail=detail,
            )
        )
    if isinstance(exc, TimeoutError):
        # aiohttp raises SocketTimeoutError for sock_read, a bare TimeoutError for the total.
        seconds = timeouts.read
        if total is not None and not isinstance(exc, aiohttp.SocketTimeoutError):
            seconds = total
        return UpstreamTimeout(
            f"{upstream} timed out after {_seconds(seconds)} {doing}", detail=detail
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamInvalid(f"{upstream} sent an invalid URL {doing}: {exc}", detail=detail)
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return Transient(
            UpstreamUnavailable(f"{upstream} connection failed {doing}: {reason}", detail=detail)
        )
    return UpstreamUnavailable(f"{upstream} request failed {doing}: {reason}", detail=detail)


def status_error(
    status: int,
    headers: Any,
    body: bytes,
    *,
    upstream: UpstreamName,
    what: str,
    repo: str,
    missing: type[RegistryError],
    credential: Credential | None,
) -> RegistryError | Transient:
    """The error for an upstream answering `status` to a request for `what` in `repo`.

    `missing` is the error for a plain 404 (ManifestUnknown, BlobUnknown); an upstream that says
    NAME_UNKNOWN gets NameUnknown whatever was asked for.
    """
    codes, messages = _upstream_errors(body)
    said = f" ({'; '.join(messages)})" if messages else ""
    detail: dict[str, Any] = {"upstream": upstream.name, "status": status}
    if status == 404:
        if "NAME_UNKNOWN" in codes:
            return NameUnknown(f"{upstream} has no repository {repo}{said}", detail=detail)
        return missing(f"{upstream} has no {what}{said}", detail=detail)
    if status == 401:
        return NameUnknown(unauthorized_message(upstream, repo, credential), detail=detail)
    if status == 403:
        return Denied(f"{upstream} denied access to {what} (403){said}", detail=detail)
    if status == 429:
        raw = headers.get("Retry-After")
        retry_after = parse_retry_after(raw)
        # When to retry is the throttle's to say (throttle.py): a 429 without Retry-After waits too.
        return UpstreamTooManyRequests(
            f"{upstream} is rate-limiting requests (429) for {what}{said}",
            retry_after=retry_after,
            detail=detail,
            headers={"Retry-After": raw} if raw is not None else None,
        )
    error = UpstreamUnavailable(f"{upstream} answered {status} for {what}{said}", detail=detail)
    # 501 and 505 say the upstream will never do this; other 5xx may pass.
    if status >= 500 and status not in (501, 505):
        return Transient(error)
    return error


def unauthorized_message(upstream: UpstreamName, repo: str, credential: Credential | None) -> str:
    # Registries answer 401 rather than 404 for a repository an account cannot see, so a 401
    # after authenticating means "missing or private": say both, and what the rule sent.
    if credential is None:
        needs = "needs a credential (the rule has no credential)"
    else:
        needs = f"the rule credential (user {credential.username!r}) may not pull it"
    return f"{upstream} answered 401 for repository {repo}: it does not exist there, or {needs}"


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit + 1` bytes of the body: a result longer than `limit` means it was too large.

    Reads chunk by chunk so an oversized body is abandoned without being held in memory.
    """
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(parts)[: limit + 1]


def _upstream_errors(body: bytes) -> tuple[set[str], list[str]]:
    """The codes and messages of an OCI error body, or nothing when it is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return set(), []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return set(), []
    codes: set[str] = set()
    messages: list[str] = []
    for entry in errors[:5]:
        if not isinstance(entry, dict):
            continue
        code = entry.get("code")
        message = entry.get("message")
        if isinstance(code, str):
            codes.add(code.upper())
        if isinstance(code, str) or isinstance(message, str):
            messages.append(": ".join(str(part)[:200] for part in (code, message) if part))
    return codes, messages


def _seconds(value: float) -> str:
    return f"{value:g}s"
