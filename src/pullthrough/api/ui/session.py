"""Who is looking at the dashboard: the login form, the session cookie and the CSRF token.

A session is a login token (`access/tokens.py`, purpose "login") in an HttpOnly, SameSite=Strict
cookie: signed, expiring at its `exp` like every other login token, and checked on each request
by the same authenticator as the admin API's `token:<login token>`, so a deleted principal, a
changed password or a deleted API key ends it within the bound revocation has everywhere else.
The dashboard, like the admin API, needs `registry:Admin` on `*`. Its only forms are login and
logout, both POST and both carrying a token that must match a cookie no other site can read or
send (the double-submit pattern, with SameSite=Strict).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from pullthrough.access.authn import LOGIN_TOKEN_USERNAMES
from pullthrough.access.registry_policy.document import ADMIN, REGISTRY_WIDE
from pullthrough.api.access import AccessControl
from pullthrough.errors import Unauthorized

SESSION_COOKIE = "pullthrough_session"
CSRF_COOKIE = "pullthrough_csrf"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/ui"
LOGIN_PATH = "/ui/login"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who the page is rendered for; `name` None when authentication is off."""

    name: str | None
    expires_at: float | None = None


VIEWER_KEY = web.RequestKey("ui_viewer", Viewer)
_NEW_CSRF_KEY = web.RequestKey("ui_new_csrf", str)


class LoginRefused(Exception):
    """What the login form says back; never which of the name or the password was wrong."""


class NotAnAdmin(Exception):
    """A logged-in principal the registry policy does not grant `registry:Admin`."""


def behind_tls(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def csrf_token(request: web.Request) -> str:
    """The CSRF token of this browser: its cookie's value, or a new one that `with_csrf_cookie`
    sets on the response."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) == 32:
        return token
    fresh = request.get(_NEW_CSRF_KEY)
    if fresh is None:
        fresh = secrets.token_hex(16)
        request[_NEW_CSRF_KEY] = fresh
    return fresh


def with_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
    fresh = request.get(_NEW_CSRF_KEY)
    if fresh is not None:
        _set_cookie(request, response, CSRF_COOKIE, fresh, max_age=None)


def check_csrf(request: web.Request, sent: object) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return (
        isinstance(sent, str)
        and bool(expected)
        and hmac.compare_digest(sent.encode(), (expected or "").encode())
    )


async def viewer(request: web.Request, access: AccessControl | None) -> Viewer:
    """The admin the session cookie names; raises `web.HTTPFound` to the login form when there
    is no valid session, `NotAnAdmin` when the policy refuses them."""
    if access is None:
        return Viewer(None)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _to_login(request)
    try:
        caller = await access.authenticator.login(LOGIN_TOKEN_USERNAMES[0], token)
    except Unauthorized:
        raise _to_login(request, forget=True) from None
    decision = await access.authorizer.decide(caller.principal, ADMIN, REGISTRY_WIDE)
    if not decision.allowed:
        why = decision.explain(caller.principal, ADMIN, REGISTRY_WIDE)
        raise NotAnAdmin(f"the dashboard needs {ADMIN}: {why}")
    return Viewer(caller.principal.name, caller.expires_at)


async def log_in(
    request: web.Request, access: AccessControl, username: str, password: str
) -> web.StreamResponse:
    """Check a password or API key and start a session; raises `LoginRefused`."""
    if not username or not password:
        raise LoginRefused("give a user name (or API key name) and its password (or key)")
    try:
        caller = await access.authenticator.login(username, password)
    except Unauthorized:
        raise LoginRefused("wrong user name or password") from None
    if caller.proof != "secret":
        raise LoginRefused("log in with a password or an API key, not a token")
    principal = caller.principal
    decision = await access.authorizer.decide(principal, ADMIN, REGISTRY_WIDE)
    if not decision.allowed:
        why = decision.explain(principal, ADMIN, REGISTRY_WIDE)
        raise LoginRefused(f"the dashboard needs {ADMIN}: {why}")
    ttl = access.config.login_token_ttl
    token = access.signer.issue(principal, ttl, stamp=caller.stamp, purpose="login")
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=int(ttl))
    return response


def log_out(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _to_login(request: web.Request, *, forget: bool = False) -> web.HTTPFound:
    target = request.rel_url.path_qs
    response = web.HTTPFound(LOGIN_PATH + "?next=" + quote(target, safe=""))
    if forget:
        response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never another site (an open redirect)."""
    unsafe = ("//", "\\", "\r", "\n")
    if target and target.startswith(COOKIE_PATH) and not any(c in target for c in unsafe):
        return target
    return COOKIE_PATH + "/"


def _set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    max_age: int | None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=behind_tls(request),
    )
