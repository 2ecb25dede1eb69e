"""Who may use the admin API: with auth on, a caller the registry accepts (password, API key,
login token or registry token) whom the registry policy grants `registry:Admin` on `*`."""

from __future__ import annotations

from aiohttp import web

from pullthrough.access.registry_policy.document import ADMIN, REGISTRY_WIDE
from pullthrough.api.access import AccessControl
from pullthrough.api.admin.errors import Denied, Unauthorized
from pullthrough.errors import Unauthorized as RegistryUnauthorized
from pullthrough.telemetry.tracing import note_principal


def challenge(access: AccessControl) -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{access.config.service}", charset="UTF-8"'}


async def require_admin(request: web.Request, access: AccessControl | None) -> None:
    """Return when the caller may administer the registry; else a 401 or 403 that says why.
    Without auth (loopback only) everyone may."""
    if access is None:
        return
    try:
        caller = await access.caller(request, None)
    except RegistryUnauthorized as exc:
        raise Unauthorized(
            f"{exc.message} (the admin API takes Basic NAME:API_KEY, Basic token:<login token> "
            "or a Bearer registry token)",
            headers=challenge(access),
        ) from None
    principal = caller.principal
    note_principal(principal.name)
    decision = await access.authorizer.decide(principal, ADMIN, REGISTRY_WIDE)
    if decision.allowed:
        return
    why = decision.explain(principal, ADMIN, REGISTRY_WIDE)
    if not principal.authenticated:
        raise Unauthorized(f"log in to use the admin API ({why})", headers=challenge(access))
    raise Denied(f"the admin API needs {ADMIN}: {why}")
