"""Answering an upstream's authentication challenges: anonymous, Basic, and Docker token auth.

One `UpstreamAuth` per upstream remembers what the upstream asked for last time (Basic, or
Bearer tokens from a realm), so later requests authenticate up front instead of collecting a
401 first. With a `ChallengeStore`, what one worker process learnt serves the others too: a
worker's first request to an upstream another worker has talked to carries credentials, and
its first blob GET after another worker fetched the manifest is not a wasted 401.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Protocol

import aiohttp
from yarl import URL

from pullthrough.errors import Denied, RegistryError, UpstreamInvalid, UpstreamUnavailable
from pullthrough.upstream.challenge import Challenge
from pullthrough.upstream.credentials import Credential, CredentialProvider
from pullthrough.upstream.faults import (
    ERROR_BODY_LIMIT,
    Transient,
    UpstreamName,
    read_at_most,
    status_error,
    translate_exception,
)
from pullthrough.upstream.retries import UpstreamTimeouts
from pullthrough.upstream.tokens import Token, TokenCache, TokenKey

logger = logging.getLogger(__name__)

# Token answers are a few KiB; anything far larger is not a token.
TOKEN_BODY_LIMIT = 1024 * 1024


def default_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


class ChallengeStore(Protocol):
    """Where all worker processes share how each upstream (by origin) asked to be
    authenticated: a `basic` challenge, or a `bearer` one with its realm and service."""

    async def recall(self, origin: str) -> Challenge | None:
        """The challenge last remembered for `origin`, if any."""

    async def remember(self, origin: str, challenge: Challenge) -> None:
        """Record the challenge `origin` answered with."""


class UpstreamAuth:
    """The `Authorization` header for requests to one upstream, and how to get a better one."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream: UpstreamName,
        origin: URL,
        *,
        credentials: CredentialProvider,
        tokens: TokenCache,
        timeouts: UpstreamTimeouts,
        user_agent: str,
        challenges: ChallengeStore | None = None,
    ) -> None:
        self._session = session
        self._upstream = upstream
        self._origin = origin
        self._credentials = credentials
        # The credential as the provider last gave it (None: anonymous), and its Basic header.
        self.credential: Credential | None = None
        self._basic_header: str | None = None
        self._tokens = tokens
        self._timeouts = timeouts
        self._user_agent = user_agent
        self._uses_basic = False
        self._bearer: Challenge | None = None  # the last Bearer challenge: realm and service
        self._scopes: dict[str, str] = {}  # repo -> scope the upstream asked for, if not default
        self._challenges = challenges
        # Until the upstream has answered this process, the store may know what it wants.
        self._anonymous_answered = False
        self._bearer_recalled = False  # self._bearer came from the store, not a 401 seen here
        self._shared: Challenge | None = None  # what the store knows, as far as we know

    async def authorization(self, repo: str) -> str | None:
        """The header to send up front: Basic or a (cached or fetched) token once the upstream has
        shown which it wants; None (anonymous) until then."""
        await self._refresh()
        if not self._uses_basic and self._bearer is None and not self._anonymous_answered:
            await self._recall()
        if self._uses_basic:
            return self._basic_header
        if self._bearer is None:
            return None
        try:
            return await self._bearer_header(self._bearer, self._scope(repo))
        except (RegistryError, Transient) as exc:
            if not self._bearer_recalled:
                raise
            # What another worker saw may be out of date: ask the upstream itself (one 401).
            logger.info("%s: the remembered token realm did not work: %s", self._upstream, exc)
            self._bearer, self._bearer_recalled = None, False
            return None

    def answered(self, authorization: str | None) -> None:
        """The upstream answered a request sent with `authorization` without challenging it."""
        if authorization is None:
            self._anonymous_answered = True

    async def _recall(self) -> None:
        """Take what another worker learnt of this upstream's authentication, if anything."""
        if self._challenges is None:
            return
        challenge = await self._challenges.recall(str(self._origin))
        if challenge is None:
            return
        self._shared = challenge
        if challenge.scheme == "bearer" and challenge.param("realm"):
            self._bearer, self._bearer_recalled = challenge, True
        elif challenge.scheme == "basic" and self._basic_header is not None:
            self._uses_basic = True

    async def _refresh(self) -> None:
        """Take the provider's current credential: a rotated secret is used from the next
        request on, and (the account being part of the token key) no token fetched with the
        old one is."""
        credential = await self._credentials.current()
        if credential != self.credential:
            self.credential = credential
            self._basic_header = _basic(credential) if credential is not None else None

    def refused(self, repo: str, authorization: str | None) -> None:
        """The upstream answered 401 to `authorization`: never send that token again."""
        if authorization is not None and authorization.startswith("Bearer "):
            key = self._key(self._scope(repo), self.credential)
            self._tokens.drop(key, authorization.removeprefix("Bearer "))

    async def answer(self, challenges: list[Challenge], repo: str) -> str | None:
        """The header that answers the upstream's challenges for `repo`, or None when there is
        nothing to answer with (no usable challenge, or Basic without a credential)."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.param("realm")), None)
        if bearer is not None:
            await self._share(_token_service(bearer))
            self._bearer, self._bearer_recalled = bearer, False
            scope = bearer.param("scope") or default_scope(repo)
            if scope != default_scope(repo):
                self._scopes[repo] = scope
            return await self._bearer_header(bearer, scope)
        if any(c.scheme == "basic" for c in challenges) and self._basic_header is not None:
            await self._share(Challenge("basic"))
            self._uses_basic = True
            return self._basic_header
        return None

    async def _share(self, challenge: Challenge) -> None:
        """Tell the other workers what the upstream asked for, once per change."""
        if self._challenges is None or challenge == self._shared:
            return
        self._shared = challenge
        await self._challenges.remember(str(self._origin), challenge)

    def _scope(self, repo: str) -> str:
        return self._scopes.get(repo) or default_scope(repo)

    def _key(self, scope: str, credential: Credential | None) -> TokenKey:
        account = credential.account if credential is not None else ""
        return TokenKey(self._upstream.host, scope, account)

    async def _bearer_header(self, challenge: Challenge, scope: str) -> str:
        credential = self.credential  # the token is fetched with, and kept for, this one
        token = await self._tokens.get(
            self._key(scope, credential), lambda: self._fetch_token(challenge, scope, credential)
        )
        return f"Bearer {token}"

    async def _fetch_token(
        self, challenge: Challenge, scope: str, credential: Credential | None
    ) -> Token:
        realm = URL(challenge.param("realm") or "")
        if not realm.absolute or realm.scheme not in ("http", "https"):
            raise UpstreamInvalid(
                f"{self._upstream} sent a token realm that is not an http(s) URL: {realm}"
            )
        query: list[tuple[str, str]] = list(realm.query.items())
        service = challenge.param("service")
        if service:
            query.append(("service", service))
        # Several scopes arrive space-separated; token services take one `scope` each.
        query.extend(("scope", part) for part in scope.split())
        url = realm.with_query(query)
        headers = {"User-Agent": self._user_agent}
        # Credentials go to an https realm (Docker Hub's is auth.docker.io) or to the upstream's
        # own host (a self-hosted token service often listens on another port of it), never in
        # clear text to some other host.
        if credential is not None and (realm.scheme == "https" or realm.host == self._origin.host):
            headers["Authorization"] = _basic(credential)
        doing = f"fetching a token for {scope} from {realm.host}"
        timeout = aiohttp.ClientTimeout(
            total=self._timeouts.total_manifest,
            sock_connect=self._timeouts.connect,
            sock_read=self._timeouts.read,
        )
        logger.debug("%s: %s", self._upstream, doing)
        try:
            async with self._session.get(
                url,
                headers=headers,
                timeout=timeout,
                max_redirects=5,
                raise_for_status=False,
            ) as response:
                if response.status != 200:
                    body = await read_at_most(response, ERROR_BODY_LIMIT)
                    raise self._refusal(response, body, scope, realm, credential)
                body = await read_at_most(response, TOKEN_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError) as exc:
            translated = translate_exception(
                exc, self._upstream, doing, self._timeouts, total=self._timeouts.total_manifest
            )
            raise translated from exc
        token = Token.from_response(_json(body)) if len(body) <= TOKEN_BODY_LIMIT else None
        if token is None:
            raise UpstreamInvalid(
                f"{self._upstream}: token service {realm.host} answered without a token"
            )
        return token

    def _refusal(
        self,
        response: aiohttp.ClientResponse,
        body: bytes,
        scope: str,
        realm: URL,
        credential: Credential | None,
    ) -> Exception:
        status = response.status
        if status in (401, 403):
            who = (
                f"the rule credential (user {credential.username!r})"
                if credential is not None
                else "anonymous access"
            )
            return Denied(
                f"{self._upstream}: token service {realm.host} refused {who} "
                f"for {scope} ({status}); check the rule's credential",
                detail={"upstream": self._upstream.name, "status": status},
            )
        if status == 429 or status >= 500:
            return status_error(
                status,
                response.headers,
                body,
                upstream=self._upstream,
                what=f"a token for {scope} from {realm.host}",
                repo=scope,
                missing=UpstreamUnavailable,
                credential=credential,
            )
        return UpstreamUnavailable(
            f"{self._upstream}: token service {realm.host} answered {status} for {scope}",
            detail={"upstream": self._upstream.name, "status": status},
        )


def _token_service(challenge: Challenge) -> Challenge:
    """What a challenge says about the upstream as a whole: the scheme, and a Bearer challenge's
    realm and service (its scope is about one repository)."""
    kept = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
    return Challenge(challenge.scheme, kept)


def _basic(credential: Credential) -> str:
    # UTF-8, as registries written in Go decode it (aiohttp's BasicAuth assumes latin-1).
    pair = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None
