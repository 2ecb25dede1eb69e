"""One registry client per rule, sharing an HTTP session, a token cache and, through the
metadata database, what each upstream said about its rate limit and how it authenticates with
the other workers."""

from __future__ import annotations

import logging

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from pullthrough.access.rule_credentials import SecretMissing, StoredCredentials, find_credential
from pullthrough.access.secrets import SecretStore
from pullthrough.config import RuleConfig, Settings
from pullthrough.metadata.store import MetadataStore
from pullthrough.metadata.upstream_state import StoredChallenge
from pullthrough.telemetry.tracing import UpstreamRequests
from pullthrough.upstream.challenge import Challenge
from pullthrough.upstream.client import RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.credentials import (
    Credential,
    CredentialProvider,
    CredentialSource,
    FixedCredential,
    SourceCredential,
)
from pullthrough.upstream.health import HealthSink
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.tokens import TokenCache

log = logging.getLogger(__name__)


class Upstreams:
    """A registry client per rule, made when the rule is first used; a rule changed through the
    admin API gets a new client (its old one finishes what it has in flight)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        credentials: CredentialSource,
        metadata: MetadataStore | None = None,
        health: HealthSink | None = None,
        secrets: SecretStore | None = None,
    ) -> None:
        self._session = session
        self._tokens = TokenCache()
        self._timeouts = UpstreamTimeouts(
            connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout
        )
        self._retry = RetryPolicy(attempts=settings.upstream_retries)
        self._shared = SharedUpstreamState(metadata) if metadata is not None else None
        self._health = health
        self._credentials = credentials
        # With a secret store, secrets come from it (the environment as fallback) and are
        # looked up as clients authenticate, so a rotation needs no restart.
        self._secrets = secrets
        self._stored = (
            StoredCredentials(self._secrets, credentials) if self._secrets is not None else None
        )
        self._clients: dict[RuleConfig, RegistryClient] = {}
        self._observer = UpstreamRequests()

    def client(self, rule: RuleConfig) -> RegistryClient:
        client = self._clients.get(rule)
        if client is None:
            client = RegistryClient(
                self._session,
                rule.upstream,
                name=rule.prefix,
                credentials=_credential_of(rule, self._credentials, self._stored),
                timeouts=self._timeouts,
                retry=self._retry,
                tokens=self._tokens,
                shared_state=self._shared,
                health=self._health,
                challenges=self._shared,
                observer=self._observer,
            )
            self._clients[rule] = client
        return client

    async def credential_now(self, rule: RuleConfig) -> Credential | None:
        """The rule's credential read afresh (pulls may use one a few seconds old); None when
        the rule names none. SecretMissing when it names a secret nobody has, SecretError when
        the stored one cannot be opened."""
        name = rule.credential
        if not name:
            return None
        found = (
            await find_credential(self._secrets, name, self._credentials)
            if self._secrets is not None
            else self._credentials.lookup(name)
        )
        if found is None:
            raise SecretMissing(name)
        return found

    def probe(self, rule: RuleConfig, credential: Credential | None) -> RegistryClient:
        """A client of the rule's upstream that shares nothing learnt by the others (no cached
        token, no remembered challenge) and tries once: each request it makes is a real test
        of `credential`."""
        return RegistryClient(
            self._session,
            rule.upstream,
            name=rule.prefix,
            credential=credential,
            timeouts=self._timeouts,
            retry=RetryPolicy(attempts=1),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    @property
    def timeouts(self) -> UpstreamTimeouts:
        return self._timeouts

    def all(self) -> list[RegistryClient]:
        return list(self._clients.values())

    async def close(self) -> None:
        """Save what the clients have pending; before the session and metadata close."""
        for client in self._clients.values():
            await client.close()


def _credential_of(
    rule: RuleConfig, source: CredentialSource, stored: StoredCredentials | None
) -> CredentialProvider:
    if not rule.credential:
        return FixedCredential(None)
    if stored is not None:
        return stored.secret(rule.credential)
    return SourceCredential(source, rule.credential)


class SharedUpstreamState:
    """The registry clients' `ThrottleStore` and `ChallengeStore`, over the metadata database
    all workers share.

    A database hiccup never fails a pull: it is logged, and this worker goes on with what it
    knows itself.
    """

    def __init__(self, metadata: MetadataStore) -> None:
        self._upstreams = metadata.upstreams

    async def recall(self, origin: str) -> Challenge | None:
        try:
            stored = await self._upstreams.challenge(origin)
        except SQLAlchemyError as exc:
            log.warning("reading how upstream %s authenticates failed: %s", origin, exc)
            return None
        if stored is None:
            return None
        params = {"realm": stored.realm, "service": stored.service}
        return Challenge(stored.scheme, {k: v for k, v in params.items() if v})

    async def remember(self, origin: str, challenge: Challenge) -> None:
        stored = StoredChallenge(
            challenge.scheme, challenge.param("realm"), challenge.param("service")
        )
        try:
            await self._upstreams.save_challenge(origin, stored)
        except SQLAlchemyError as exc:
            log.warning("recording how upstream %s authenticates failed: %s", origin, exc)

    async def blocked_until(self, upstream: str) -> float | None:
        try:
            return await self._upstreams.blocked_until(upstream)
        except SQLAlchemyError as exc:
            log.warning("reading the state of upstream %s failed: %s", upstream, exc)
            return None

    async def block(self, upstream: str, until: float) -> None:
        try:
            await self._upstreams.block(upstream, until)
        except SQLAlchemyError as exc:
            log.warning(
                "recording the 429 of upstream %s failed, other workers may not honour it: %s",
                upstream,
                exc,
            )

    async def save_rate_limit(self, upstream: str, state: RateLimitState) -> None:
        if state.seen_at is None:
            return
        try:
            await self._upstreams.save_rate_limit(
                upstream,
                limit=state.limit,
                remaining=state.remaining,
                window=state.window,
                source=state.source,
                seen_at=state.seen_at,
            )
        except SQLAlchemyError as exc:
            log.warning("recording the rate limit of upstream %s failed: %s", upstream, exc)
