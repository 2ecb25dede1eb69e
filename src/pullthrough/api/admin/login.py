"""/login-token: any principal's own short-lived login token, as ECR's GetAuthorizationToken
(`aws ecr get-login-password`). Not an administrator's operation: the caller logs in with their
own password or API key, never with a token (a token that could renew itself would never
expire)."""

from __future__ import annotations

from aiohttp import web

from pullthrough.access.authn import LOGIN_TOKEN_USERNAMES, Caller
from pullthrough.api.access import AccessControl
from pullthrough.api.admin.auth import challenge
from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Conflict, Denied, Invalid, Unauthorized
from pullthrough.api.admin.fields import iso_time
from pullthrough.api.admin.models import LoginToken, LoginTokenRequest
from pullthrough.api.admin.replies import reply
from pullthrough.errors import Unauthorized as RegistryUnauthorized
from pullthrough.telemetry.tracing import note_principal

MIN_TTL = 1.0


async def create_login_token(request: web.Request) -> web.Response:
    access = services(request).access
    if access is None:
        await read_model(request, LoginTokenRequest)
        raise Conflict(
            "authentication is off (auth.enabled: false): clients pull without logging in"
        )
    caller = await _caller(request, access)
    wanted = await read_model(request, LoginTokenRequest)
    most = access.config.login_token_ttl
    ttl = most if wanted.ttl is None else wanted.ttl
    if not MIN_TTL <= ttl <= most:
        limits = f"from {MIN_TTL:g}s to {most:g}s (auth.login_token_ttl)"
        raise Invalid(f"ttl {ttl:g}s is out of range: give {limits}", [("ttl", limits)])
    principal = caller.principal
    token = access.signer.issue(principal, ttl, stamp=caller.stamp, purpose="login")
    expires_at = access.signer.verify(token, "login").expires_at
    return reply(
        LoginToken(
            token=token,
            username=LOGIN_TOKEN_USERNAMES[0],
            principal=principal.name,
            expires_at=iso_time(expires_at),
        )
    )


async def _caller(request: web.Request, access: AccessControl) -> Caller:
    """Whoever logged in with their own password or API key; else a 401 or 403 saying how."""
    how = "log in with your own password or API key (Basic NAME:SECRET) to get a login token"
    try:
        caller = await access.authenticator.authenticate(request.headers.get("Authorization"))
    except RegistryUnauthorized as exc:
        raise Unauthorized(f"{exc.message} ({how})", headers=challenge(access)) from None
    if caller is None:
        raise Unauthorized(how, headers=challenge(access))
    note_principal(caller.principal.name)
    if caller.proof != "secret":
        raise Denied(f"a {caller.proof} cannot get a login token: {how}")
    return caller
