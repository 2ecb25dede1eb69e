"""Bearer tokens from registry token services, cached per upstream, account and scope.

Docker Hub answers every anonymous pull with a 401 until a token is presented; caching tokens
until just before they expire saves that round trip and a token request on every pull, and
fetching each token once for all concurrent requests keeps a cold start from stampeding the
token service.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Tokens without `expires_in` live 60 s, the Docker token spec's default and minimum.
DEFAULT_LIFETIME = 60.0
# Renew this long before expiry so a token never expires between being read and being used.
EXPIRY_MARGIN = 5.0

_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class TokenKey:
    """What a token is good for: one upstream host, one account (empty: anonymous), one scope.

    The account is part of the key so that a rule without a credential never borrows a token
    fetched with another rule's credential for the same upstream.
    """

    host: str
    scope: str
    account: str = ""


@dataclass(frozen=True)
class Token:
    value: str
    lifetime: float  # seconds it stays valid from when it was received

    @classmethod
    def from_response(cls, body: Any, *, now: datetime | None = None) -> Token | None:
        """The token in a token service's JSON answer, or None when it carries none.

        `issued_at` shortens the lifetime by the time the answer spent in transit or in caches,
        but never lengthens it: a clock ahead of ours must not make us keep a dead token.
        """
        if not isinstance(body, dict):
            return None
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            return None
        expires_in = body.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float)
            and not isinstance(expires_in, bool)
            and expires_in > 0
            else DEFAULT_LIFETIME
        )
        issued_at = _parse_time(body.get("issued_at"))
        if issued_at is not None:
            elapsed = ((now or datetime.now(UTC)) - issued_at).total_seconds()
            lifetime -= min(max(elapsed, 0.0), lifetime)
        return cls(value, lifetime)


class TokenCache:
    """Tokens by key until shortly before expiry; one fetch per key however many ask at once."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = EXPIRY_MARGIN,
    ) -> None:
        self._clock = clock
        self._margin = margin
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._inflight: dict[TokenKey, asyncio.Task[Token]] = {}

    def peek(self, key: TokenKey) -> str | None:
        """The cached token for key if it is still good, without fetching."""
        entry = self._tokens.get(key)
        if entry is None:
            return None
        value, good_until = entry
        if self._clock() >= good_until:
            del self._tokens[key]
            return None
        return value

    async def get(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> str:
        """The cached token for key, or the one `fetch` returns, fetched once for all waiters.

        Every waiter gets the same token or the same error. The fetch runs as its own task so a
        waiter that is cancelled (its client went away) does not cancel it for the others.
        """
        cached = self.peek(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, fetch))
            self._inflight[key] = task
            task.add_done_callback(_consume_exception)
        return (await asyncio.shield(task)).value

    def drop(self, key: TokenKey, value: str) -> None:
        """Forget key's token if it is still `value` (the upstream refused it).

        Comparing the value keeps a refusal of an old token from discarding a fresher one that a
        concurrent request has just fetched.
        """
        entry = self._tokens.get(key)
        if entry is not None and entry[0] == value:
            del self._tokens[key]

    async def _fetch(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> Token:
        try:
            token = await fetch()
            lifetime = token.lifetime
            # Short-lived tokens keep at least half their life, so they are used at all.
            margin = min(self._margin, lifetime / 2)
            self._tokens[key] = (token.value, self._clock() + lifetime - margin)
            return token
        finally:
            self._inflight.pop(key, None)

    def __len__(self) -> int:
        return len(self._tokens)


def _consume_exception(task: asyncio.Task[Token]) -> None:
    # When every waiter was cancelled nobody retrieves a failed fetch's exception; retrieve it
    # here so asyncio does not log "exception was never retrieved".
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    # Go's RFC 3339 timestamps carry nanoseconds; datetime takes at most microseconds.
    text = _FRACTION.sub(r"\1", value.strip()).replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
