"""Client access over HTTP: the Docker token endpoint, 401 challenges, and per-request checks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web

from pullthrough.access.authn import Authenticator, Caller, parse_basic
from pullthrough.access.authz import Authorizer
from pullthrough.access.import_check import ImportCheck, import_anything
from pullthrough.access.registry_policy.document import (
    ANONYMOUS,
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    Principal,
)
from pullthrough.access.tokens import RepositoryAccess, TokenSigner
from pullthrough.cache.rulebook import RuleBook
from pullthrough.config import AuthConfig
from pullthrough.errors import Denied, NameInvalid, NameUnknown, RequestInvalid, Unauthorized

log = logging.getLogger(__name__)


@dataclass
class AccessControl:
    """Everything the HTTP layer needs to decide who may do what; None when auth is off."""

    config: AuthConfig
    authenticator: Authenticator
    authorizer: Authorizer
    signer: TokenSigner
    rules: RuleBook

    def realm(self, request: web.Request) -> str:
        return self.config.realm or f"{request.scheme}://{request.host}/token"

    def challenge(self, request: web.Request, scope: str | None, error: str = "") -> str:
        parts = [f'realm="{self.realm(request)}"', f'service="{self.config.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    async def caller(self, request: web.Request, scope: str | None) -> Caller:
        """The authenticated caller, the anonymous one if allowed, else a 401 challenge."""
        try:
            found = await self.authenticator.authenticate(request.headers.get("Authorization"))
        except Unauthorized as exc:
            raise Unauthorized(
                exc.message, headers={"WWW-Authenticate": self.challenge(request, scope)}
            ) from None
        if found is None:
            if self.config.allow_anonymous:
                return Caller(ANONYMOUS)
            raise Unauthorized(
                "authentication required: docker login to this registry, or send a token",
                headers={"WWW-Authenticate": self.challenge(request, scope)},
            )
        return found

    def check_token_scope(self, request: web.Request, caller: Caller, scope: str | None) -> None:
        """A Bearer token must cover the repository: otherwise the client is told (401) to get
        one that does. Called after the policy allowed the request, so that a denial is a 403
        that says why rather than an endless token dance."""
        if caller.token is None or scope is None:
            return
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        granted = caller.token.catalog if kind == "registry" else caller.token.grants(name)
        if not granted:
            raise Unauthorized(
                f"the token does not cover {scope}: ask the token endpoint for that scope",
                headers={"WWW-Authenticate": self.challenge(request, scope, "insufficient_scope")},
            )

    async def pull_check(self, principal: Principal, repository: str) -> ImportCheck:
        """Require Pull on `repository`; return the check for fetching new content into it."""
        await self.authorizer.require(principal, PULL, repository)
        decision = await self.authorizer.decide(principal, IMPORT_UPSTREAM, repository)
        if decision.allowed:
            return import_anything

        why = decision.explain(principal, IMPORT_UPSTREAM, repository)

        def refuse(what: str) -> None:
            raise Denied(
                f"pulling uncached {what} needs {IMPORT_UPSTREAM}, which principal "
                f"{principal.name!r} lacks: {why}"
            )

        return refuse

    async def may_list(self, principal: Principal, repository: str) -> bool:
        return PULL in await self.authorizer.allowed(principal, repository)

    async def require_catalog(self, principal: Principal) -> None:
        await self.authorizer.require(principal, LIST_REPOSITORIES, "*")

    async def issue(self, request: web.Request) -> web.Response:
        """The Docker token endpoint (GET), and the OAuth2 password grant (POST) containerd
        tries first. Scopes are trimmed to what the policy grants."""
        if request.method == "POST":
            form = await request.post()
            username, password = str(form.get("username", "")), str(form.get("password", ""))
            scopes = str(form.get("scope", "")).split()
            caller = await self.authenticator.login(username, password) if username else None
        else:
            scopes = [s for value in request.query.getall("scope", []) for s in value.split()]
            header = request.headers.get("Authorization")
            caller = None
            if header and header.lower().startswith("basic "):
                caller = await self.authenticator.login(*parse_basic(header[6:]))
            elif header:
                raise Unauthorized("the token endpoint takes Basic credentials")
        if caller is None:
            if not self.config.allow_anonymous:
                raise Unauthorized(
                    "log in with a username and password or API key to get a token",
                    headers={"WWW-Authenticate": f'Basic realm="{self.config.service}"'},
                )
            caller = Caller(ANONYMOUS)
        principal = caller.principal
        access, catalog = await self._grant(principal, scopes)
        ttl = self.config.token_ttl
        if caller.expires_at is not None:  # a login token's registry tokens end with it
            ttl = min(ttl, caller.expires_at - time.time())
        token = self.signer.issue(
            principal, ttl, stamp=caller.stamp, access=access, catalog=catalog
        )
        log.debug(
            "issued a token to %r for %d of %d scopes",
            principal.name,
            len(access) + catalog,
            len(scopes),
            extra={"principal": principal.name, "granted": [a.name for a in access]},
        )
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # RFC 3339, as clients parse
        return web.json_response(
            {
                "token": token,
                "access_token": token,
                "expires_in": max(1, int(ttl)),
                "issued_at": issued,
            }
        )

    async def _grant(
        self, principal: Principal, scopes: list[str]
    ) -> tuple[tuple[RepositoryAccess, ...], bool]:
        access: list[RepositoryAccess] = []
        catalog = False
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "registry" and name == "catalog":
                decision = await self.authorizer.decide(principal, LIST_REPOSITORIES, "*")
                catalog = decision.allowed
                continue
            if kind != "repository" or not name:
                raise RequestInvalid(f"malformed scope {scope[:200]!r}")
            if "pull" not in actions.split(","):
                continue  # push and delete are never granted: the cache is read-only
            try:
                repository = (await self.rules.router()).resolve(name).repository
            except (NameInvalid, NameUnknown):
                continue
            if await self.may_list(principal, repository):
                access.append(RepositoryAccess(name, ("pull",)))
        return tuple(access), catalog


def scope_for(kind: str, name: str) -> str | None:
    if kind == "base":
        return None
    if kind == "_catalog":
        return "registry:catalog:*"
    return f"repository:{name}:pull"
