"""The admin API over HTTP, for the CLI: where the server is, how to log in, one error type.

The server and token come from options, else `PULLTHROUGH_SERVER` / `PULLTHROUGH_TOKEN`, else
the client file (`~/.config/pullthrough/client.yaml`, or `PULLTHROUGH_CLIENT_CONFIG`):

    server: http://127.0.0.1:5000
    token: ci:ptk_…        # an API key as NAME:KEY, or a login token from `login-password`
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import yaml

DEFAULT_SERVER = "http://127.0.0.1:5000"
API_ROOT = "/api/v1"
_LOGIN_TOKEN_USERNAME = "token"  # noqa: S105 - the username a login token goes with


class AdminError(Exception):
    """A refused or failed admin call; `message` is one line that says what to do."""

    def __init__(self, message: str, status: int = 0, code: str = "", fields: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.fields = fields or []


@dataclass(frozen=True)
class ClientSettings:
    server: str = DEFAULT_SERVER
    token: str | None = None

    @property
    def cache_host(self) -> str:
        """`host:port` of the server, as image references through it start."""
        return urlsplit(self.server).netloc


def client_config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("PULLTHROUGH_CLIENT_CONFIG"):
        return Path(environ["PULLTHROUGH_CLIENT_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pullthrough" / "client.yaml"


def load_client_settings(
    server: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """Options first, then the environment, then the client file, then the defaults."""
    environ = os.environ if environ is None else environ
    path = client_config_path(environ)
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AdminError(f"{path}: cannot read the client configuration: {exc}") from None
        if not isinstance(loaded, dict):
            raise AdminError(f"{path}: the client configuration must be a mapping")
        unknown = sorted(set(loaded) - {"server", "token"})
        if unknown:
            raise AdminError(f"{path}: unknown key {unknown[0]!r} (it holds server and token)")
        stored = loaded
    chosen_server = (
        server or environ.get("PULLTHROUGH_SERVER") or stored.get("server") or DEFAULT_SERVER
    )
    chosen_token = token or environ.get("PULLTHROUGH_TOKEN") or stored.get("token")
    parts = urlsplit(str(chosen_server))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AdminError(
            f"server {chosen_server!r} is not an http(s) URL (like http://127.0.0.1:5000)"
        )
    return ClientSettings(
        server=f"{parts.scheme}://{parts.netloc}",
        token=str(chosen_token) if chosen_token else None,
    )


def authorization(token: str | None) -> str | None:
    """Basic credentials for a token: `NAME:KEY` (an API key) or a bare login token."""
    if not token:
        return None
    username, sep, secret = token.partition(":")
    if not sep:
        username, secret = _LOGIN_TOKEN_USERNAME, token
    encoded = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return f"Basic {encoded}"


def path_segment(value: str) -> str:
    """A name (which may hold `/`) as one path segment of an admin URL."""
    return quote(value, safe="")


class AdminClient:
    """Synchronous calls to `/api/v1/…`; every failure is an `AdminError`."""

    def __init__(self, settings: ClientSettings, timeout: float = 60.0) -> None:
        self.settings = settings
        headers = {"Accept": "application/json"}
        auth = authorization(settings.token)
        if auth:
            headers["Authorization"] = auth
        self._http = httpx.Client(base_url=settings.server, headers=headers, timeout=timeout)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call `API_ROOT + path`; the decoded JSON body, or None for 204."""
        try:
            response = self._http.request(method, API_ROOT + path, json=json, params=params)
        except httpx.TransportError as exc:
            raise AdminError(
                f"cannot reach {self.settings.server}: {exc} (is `pullthrough serve` running? "
                "set --server or PULLTHROUGH_SERVER)"
            ) from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        raise _error_of(response, body, self.settings.server)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def put(self, path: str, json: Any) -> Any:
        return self.request("PUT", path, json=json)

    def post(self, path: str, json: Any) -> Any:
        return self.request("POST", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _error_of(response: httpx.Response, body: Any, server: str) -> AdminError:
    status = response.status_code
    code, message = "", ""
    fields: Any = []
    if isinstance(body, dict):
        code = str(body.get("code", ""))
        message = str(body.get("message", ""))
        fields = body.get("fields") or []
        errors = body.get("errors")
        if not message and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code", ""))
            message = str(errors[0].get("message", ""))
    if status == 401:
        hint = "log in: pass --token (NAME:API_KEY or a login token) or set PULLTHROUGH_TOKEN"
        message = f"{message}; {hint}" if message else hint
    elif status == 404 and not code:
        message = f"{server} has no admin API at {response.request.url.path} (is it pullthrough?)"
    if not message:
        message = f"{response.request.method} {response.request.url.path}: HTTP {status}"
    return AdminError(message, status=status, code=code, fields=fields)
