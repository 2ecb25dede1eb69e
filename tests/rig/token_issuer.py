"""A Docker token-auth server (the `Bearer realm=…/token` side) for the upstream registry.

distribution 2.8 verifies tokens against `auth.token.rootcertbundle`: the JWT header carries the
signing certificate in `x5c`, and that certificate must chain to the bundle. The issuer's
certificate is self-signed and is itself the bundle, so the chain is one certificate long.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import BasicAuth, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.rig.background import BackgroundApp
from tests.rig.lifecycle import Started

DEFAULT_USERNAME = "rig-user"
DEFAULT_PASSWORD = "rig-password"
DEFAULT_SERVICE = "pullthrough-rig-registry"
DEFAULT_ISSUER = "pullthrough-rig-issuer"

# Anonymous clients may only read; push needs the configured credentials.
_ANONYMOUS_ACTIONS = frozenset({"pull"})


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered (or refused), for tests that count token fetches."""

    method: str
    service: str | None
    scopes: tuple[str, ...]
    credentials_given: bool
    username: str | None
    status: int


class TokenIssuer(Started):
    """Issues JWTs that distribution 2.8 accepts, and records every token request."""

    def __init__(
        self,
        workdir: Path,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        allow_anonymous: bool = True,
        expires_in: int = 300,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        port: int | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.allow_anonymous = allow_anonymous
        self.expires_in = expires_in
        self.service = service
        self.issuer = issuer
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _self_signed_certificate(self._key, issuer)
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = workdir / "token-issuer.crt"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._app = BackgroundApp(self._make_app, port)

    @property
    def url(self) -> str:
        return self._app.url

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def start(self) -> None:
        self._app.start()

    def stop(self) -> None:
        self._app.stop()

    def reset(self) -> None:
        """Forget recorded requests (the key and certificate stay)."""
        with self._lock:
            self.requests.clear()

    def count(self, *, scope_contains: str | None = None) -> int:
        """How many token requests were made, optionally only those naming a scope."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if scope_contains is None or any(scope_contains in s for s in r.scopes)
            )

    def issue(self, subject: str, scopes: list[str], *, anonymous: bool) -> str:
        """A signed token granting `scopes` (only the actions this subject may have)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            # A little slack: distribution compares against its own clock.
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": _grants(scopes, anonymous=anonymous),
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._get_token)
        # The OAuth2 form some clients try first when they hold credentials (containerd does).
        app.router.add_post("/token", self._post_token)
        return app

    async def _get_token(self, request: web.Request) -> web.Response:
        service = request.query.get("service")
        scopes = request.query.getall("scope", [])
        username: str | None = None
        password: str | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            try:
                basic = BasicAuth.decode(header)
            except ValueError:
                return self._answer(request, service, scopes, True, None, 400)
            username, password = basic.login, basic.password
        return self._authorize(request, service, scopes, username, password)

    async def _post_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        service = _form_str(form.get("service"))
        scope_field = _form_str(form.get("scope")) or ""
        scopes = scope_field.split()
        if form.get("grant_type") != "password":
            return self._answer(request, service, scopes, False, None, 400)
        username = _form_str(form.get("username"))
        password = _form_str(form.get("password"))
        return self._authorize(request, service, scopes, username, password)

    def _authorize(
        self,
        request: web.Request,
        service: str | None,
        scopes: list[str],
        username: str | None,
        password: str | None,
    ) -> web.Response:
        given = username is not None
        if given and (username != self.username or password != self.password):
            return self._answer(request, service, scopes, True, username, 401)
        if not given and not self.allow_anonymous:
            return self._answer(request, service, scopes, False, None, 401)
        token = self.issue(username or "", scopes, anonymous=not given)
        body = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        return self._answer(request, service, scopes, given, username, 200, body)

    def _answer(
        self,
        request: web.Request,
        service: str | None,
        scopes: list[str],
        given: bool,
        username: str | None,
        status: int,
        body: dict[str, Any] | None = None,
    ) -> web.Response:
        record = TokenRequest(request.method, service, tuple(scopes), given, username, status)
        with self._lock:
            self.requests.append(record)
        if body is None:
            headers = {"WWW-Authenticate": 'Basic realm="pullthrough-rig"'} if status == 401 else {}
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                status=status,
                headers=headers,
            )
        return web.json_response(body, status=status)


def _grants(scopes: list[str], *, anonymous: bool) -> list[dict[str, Any]]:
    """The `access` claim: each requested `type:name:actions` scope, narrowed for anonymous."""
    access = []
    for scope in scopes:
        # Repository names never contain ':', but the type may carry a class: repository(plugin).
        kind, _, rest = scope.partition(":")
        name, _, actions_field = rest.rpartition(":")
        actions = [a for a in actions_field.split(",") if a]
        if anonymous:
            actions = [a for a in actions if a in _ANONYMOUS_ACTIONS]
        if name and actions:
            access.append({"type": kind, "name": name, "actions": actions})
    return access


def _form_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
