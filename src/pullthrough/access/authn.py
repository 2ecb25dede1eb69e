"""Who is asking: Bearer registry tokens, Basic with a password, an API key or a login token.

Verified Basic credentials are remembered for a minute (by a hash, never the password), since
bcrypt is deliberately slow and clients send Basic on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Literal

from pullthrough.access.hashing import check_api_key, check_password
from pullthrough.access.policy import Principal
from pullthrough.access.tokens import TokenSigner, VerifiedToken
from pullthrough.errors import Unauthorized
from pullthrough.metadata.principals import AccessStore, PrincipalRow

log = logging.getLogger(__name__)

# `docker login --username token --password-stdin` with a token from `login-password`.
LOGIN_TOKEN_USERNAMES = ("token", "oauth2accesstoken", "<token>")
_REMEMBER_SECONDS = 60.0
_REMEMBER_MAX = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: the principal, and the registry token it showed, if any."""

    principal: Principal
    token: VerifiedToken | None = None


class Authenticator:
    def __init__(self, store: AccessStore, signer: TokenSigner) -> None:
        self._store = store
        self._signer = signer
        self._remembered: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller named by an Authorization header; None when there is none."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            token = self._signer.verify(value.strip(), "registry")
            return Caller(token.principal, token)
        if scheme == "basic":
            username, password = parse_basic(value)
            return Caller(await self.login(username, password))
        raise Unauthorized(f"unsupported Authorization scheme {scheme!r}: use Basic or Bearer")

    async def login(self, username: str, password: str) -> Principal:
        """Check a username and password, API key, or login token; raise UNAUTHORIZED."""
        fingerprint = hashlib.sha256(f"{username}\0{password}".encode()).digest()
        remembered = self._remembered.get(fingerprint)
        if remembered is not None and remembered[0] > time.monotonic():
            return remembered[1]
        principal = await self._check(username, password)
        log.debug(
            "authenticated %s %r",
            principal.kind,
            principal.name,
            extra={"principal": principal.name, "org": principal.org},
        )
        if len(self._remembered) >= _REMEMBER_MAX:
            self._remembered.clear()
        self._remembered[fingerprint] = (time.monotonic() + _REMEMBER_SECONDS, principal)
        return principal

    async def _check(self, username: str, password: str) -> Principal:
        if username in LOGIN_TOKEN_USERNAMES or (password.count(".") == 2 and len(password) > 100):
            token = self._signer.verify(password, "login")
            row = await self._store.principal(token.principal.name)
            if row is None:
                raise Unauthorized(f"principal {token.principal.name!r} no longer exists")
            return principal_of(row)
        row = await self._store.principal(username)
        valid = False
        if row is not None and row.kind == "apikey":
            valid = check_api_key(password, row.secret_hash)
        elif row is not None:
            valid = await asyncio.to_thread(check_password, password, row.secret_hash)
        if row is None or not valid:
            raise Unauthorized(f"wrong username or password for {username!r}")
        return principal_of(row)


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
