"""Who is asking: Bearer registry tokens, Basic with a password, an API key or a login token.

Verified Basic credentials are remembered for up to a minute (by a hash, never the password),
since bcrypt is deliberately slow and clients send Basic on every request. What is remembered
never outlives what the server has revoked: all of it is forgotten when the ACCESS revision
moves (a principal, password, API key or the policy changed, in any process), and a login token
is remembered only until its `exp`. A registry token is refused once its principal is deleted or
its credentials changed (`CredentialStamps`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pullthrough.access.hashing import check_api_key, check_password
from pullthrough.access.registry_policy.document import Principal
from pullthrough.access.stamps import CredentialStamps, RevisionSource
from pullthrough.access.tokens import TokenSigner, VerifiedToken
from pullthrough.errors import Unauthorized
from pullthrough.metadata.principals import AccessStore, PrincipalRow

log = logging.getLogger(__name__)

# The usernames a login token goes with: `docker login --username token --password-stdin`, and
# ECR's `AWS` so that scripts written for `aws ecr get-login-password` work unchanged.
LOGIN_TOKEN_USERNAMES = ("token", "AWS", "oauth2accesstoken", "<token>")
REMEMBER_SECONDS = 60.0
_REMEMBER_MAX = 4096

# How the caller proved who they are: their own secret (a password or an API key), or a token.
Proof = Literal["secret", "login token", "registry token"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: the principal, how they proved it, and until when."""

    principal: Principal
    token: VerifiedToken | None = None  # the registry token shown, if any
    proof: Proof | None = None  # None: the anonymous caller
    stamp: str | None = None  # the principal's credential stamp, for the tokens issued to them
    expires_at: float | None = None  # a token's `exp`: what is issued from it ends there too


class Authenticator:
    def __init__(
        self,
        store: AccessStore,
        signer: TokenSigner,
        revisions: RevisionSource,
        *,
        clock: Callable[[], float] = time.time,
        remember_seconds: float = REMEMBER_SECONDS,
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._remember_seconds = remember_seconds
        self.stamps = CredentialStamps(store, signer, revisions)
        self._remembered: dict[bytes, tuple[float, Caller]] = {}
        self._remembered_revision: int | None = None

    async def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller named by an Authorization header; None when there is none."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            token = self._signer.verify(value.strip(), "registry")
            if token.principal.authenticated:
                await self._require_current(token.principal.name, token.stamp)
            return Caller(
                token.principal,
                token,
                proof="registry token",
                stamp=token.stamp,
                expires_at=token.expires_at,
            )
        if scheme == "basic":
            username, password = parse_basic(value)
            return await self.login(username, password)
        raise Unauthorized(f"unsupported Authorization scheme {scheme!r}: use Basic or Bearer")

    async def login(self, username: str, password: str) -> Caller:
        """Check a username and password, API key, or login token; raise UNAUTHORIZED."""
        revision = await self.stamps.current()
        if revision != self._remembered_revision:
            self._remembered.clear()
            self._remembered_revision = revision
        fingerprint = hashlib.sha256(f"{username}\0{password}".encode()).digest()
        remembered = self._remembered.get(fingerprint)
        if remembered is not None and self._clock() < remembered[0]:
            return remembered[1]
        caller = await self._check(username, password)
        log.debug(
            "authenticated %s %r",
            caller.principal.kind,
            caller.principal.name,
            extra={"principal": caller.principal.name, "org": caller.principal.org},
        )
        until = self._clock() + self._remember_seconds
        if caller.expires_at is not None:
            until = min(until, caller.expires_at)
        # Not kept when a change was seen while checking: the row read may predate it.
        if self._remembered_revision == revision:
            if len(self._remembered) >= _REMEMBER_MAX:
                self._remembered.clear()
            self._remembered[fingerprint] = (until, caller)
        return caller

    async def _check(self, username: str, password: str) -> Caller:
        if username in LOGIN_TOKEN_USERNAMES or (password.count(".") == 2 and len(password) > 100):
            token = self._signer.verify(password, "login")
            row = await self._store.principal(token.principal.name)
            current = None if row is None else self._signer.stamp(row.secret_hash)
            refuse_unless_current(token.principal.name, token.stamp, current)
            assert row is not None
            return Caller(
                principal_of(row),
                proof="login token",
                stamp=token.stamp,
                expires_at=token.expires_at,
            )
        row = await self._store.principal(username)
        valid = False
        if row is not None and row.kind == "apikey":
            valid = check_api_key(password, row.secret_hash)
        elif row is not None:
            valid = await asyncio.to_thread(check_password, password, row.secret_hash)
        if row is None or not valid:
            raise Unauthorized(f"wrong username or password for {username!r}")
        return Caller(principal_of(row), proof="secret", stamp=self._signer.stamp(row.secret_hash))

    async def _require_current(self, name: str, stamp: str | None) -> None:
        refuse_unless_current(name, stamp, await self.stamps.of(name))


def refuse_unless_current(name: str, stamp: str | None, current: str | None) -> None:
    """Refuse a token whose principal is gone, or whose credentials changed since it was
    issued (`current` is the principal's stamp now, None when it no longer exists)."""
    if current is None:
        raise Unauthorized(f"principal {name!r} no longer exists")
    if stamp != current:
        raise Unauthorized(
            f"the token predates a change to {name!r}'s password or key: log in again"
        )


def principal_of(row: PrincipalRow) -> Principal:
    kind: Literal["user", "apikey"] = "apikey" if row.kind == "apikey" else "user"
    return Principal(name=row.name, kind=kind, org=row.org, groups=row.groups)


def parse_basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("malformed Basic credentials: expected username:password")
    return username, password
