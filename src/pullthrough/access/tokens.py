"""Signed, short-lived tokens: registry tokens from `/token`, and login tokens for
`docker login --password-stdin`, both HS256 JWTs under one key: `PULLTHROUGH_TOKEN_KEY` (hex of
32 bytes) when set, so that replicas sharing it accept each other's tokens; else the key file in
the data directory, created on first use.

Expiry is exact: a token is refused from its `exp` on (no leeway), by the signer's own clock.
Each token carries a stamp of the credentials its principal had when it was issued (an HMAC of
the stored hash, which reveals nothing about it), so a deleted principal, a changed password or
a re-created API key makes every token issued before it useless.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt

from pullthrough.access.registry_policy.document import Principal
from pullthrough.config import ConfigError
from pullthrough.errors import Unauthorized
from pullthrough.storage.layout import DataLayout

Purpose = Literal["registry", "login"]

KEY_ENV = "PULLTHROUGH_TOKEN_KEY"
KEY_BYTES = 32


class TokenKeyError(ConfigError):
    """`PULLTHROUGH_TOKEN_KEY` is malformed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class RepositoryAccess:
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, Any]:
        return {"type": "repository", "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    access: tuple[RepositoryAccess, ...]
    catalog: bool
    expires_at: float  # the `exp` claim: refused from this instant on
    stamp: str | None  # the principal's credential stamp when issued (None: anonymous)

    def grants(self, name: str, action: str = "pull") -> bool:
        return any(a.name == name and action in a.actions for a in self.access)


def load_or_create_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key: `PULLTHROUGH_TOKEN_KEY` when set (every replica sets the same), else the
    key file, created (0600) on first use and shared by every worker of one server."""
    environ = os.environ if environ is None else environ
    text = environ.get(KEY_ENV, "").strip()
    if text:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise TokenKeyError(
                f"${KEY_ENV} must hold {KEY_BYTES} bytes in hex ({2 * KEY_BYTES} characters); "
                "make a key with `openssl rand -hex 32`"
            )
        return key
    path = DataLayout(data_dir).token_key_file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise PermissionError(
                f"{path} is readable by other users: chmod 600 it (it signs every token)"
            ) from None
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


class TokenSigner:
    def __init__(
        self,
        key: bytes,
        *,
        service: str,
        issuer: str = "pullthrough",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.service = service
        self.issuer = issuer
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenSigner(service={self.service!r})"

    def stamp(self, secret_hash: str) -> str:
        """The stamp of a principal's stored credentials, as tokens carry it."""
        digest = hmac.new(self._key, b"credential\0" + secret_hash.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def issue(
        self,
        principal: Principal,
        ttl: float,
        *,
        stamp: str | None,
        purpose: Purpose = "registry",
        access: tuple[RepositoryAccess, ...] = (),
        catalog: bool = False,
    ) -> str:
        """A token for `principal` that expires `ttl` seconds from now (whole seconds, at least
        one); `stamp` is `self.stamp()` of the credentials it was issued for."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.service,
            "sub": principal.name,
            "iat": now,
            "nbf": now - 5,
            "exp": now + max(1, int(ttl)),
            "jti": uuid.uuid4().hex,
            "purpose": purpose,
            "kind": principal.kind,
            "org": principal.org,
            "groups": list(principal.groups),
            "access": [a.as_claim() for a in access],
        }
        if stamp is not None:
            claims["stamp"] = stamp
        if catalog:
            claims["access"].append({"type": "registry", "name": "catalog", "actions": ["*"]})
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, purpose: Purpose) -> VerifiedToken:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self.service,
                issuer=self.issuer,
                # Times are checked below against this signer's clock, without leeway.
                options={
                    "require": ["exp", "iat", "sub", "aud", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the token is not for this registry ({self.service})") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        expires_at, not_before = claims["exp"], claims.get("nbf", 0)
        if not all(isinstance(t, int | float) for t in (expires_at, not_before)):
            raise Unauthorized("the token's times are not numbers")
        now = self._clock()
        if now >= expires_at:
            raise Unauthorized("the token has expired: log in again")
        if now < not_before:
            raise Unauthorized("the token is not valid yet: check this machine's clock")
        if claims.get("purpose") != purpose:
            raise Unauthorized(f"this is not a {purpose} token")
        kind = claims.get("kind")
        if kind not in ("user", "apikey", "anonymous"):
            raise Unauthorized("the token names no principal kind")
        principal = Principal(
            name=str(claims["sub"]),
            kind=kind,
            org=claims.get("org"),
            groups=tuple(str(g) for g in claims.get("groups") or ()),
        )
        access: list[RepositoryAccess] = []
        catalog = False
        for entry in claims.get("access") or ():
            if not isinstance(entry, dict):
                continue
            if entry.get("type") == "repository":
                access.append(
                    RepositoryAccess(str(entry.get("name")), tuple(entry.get("actions") or ()))
                )
            elif entry.get("type") == "registry" and entry.get("name") == "catalog":
                catalog = True
        stamp = claims.get("stamp")
        return VerifiedToken(
            principal,
            tuple(access),
            catalog,
            expires_at=float(expires_at),
            stamp=stamp if isinstance(stamp, str) else None,
        )
