"""One registry client per rule, sharing an HTTP session, a token cache and, through the
metadata database, what each upstream said about its rate limit with the other workers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from pullthrough.access.rule_credentials import StoredCredentials
from pullthrough.access.sealing import SecretKeySource
from pullthrough.access.secrets import SecretStore
from pullthrough.config import RuleConfig, Settings
from pullthrough.metadata.store import MetadataStore
from pullthrough.upstream.client import RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.credentials import (
    CredentialProvider,
    CredentialSource,
    FixedCredential,
    SourceCredential,
)
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.tokens import TokenCache

log = logging.getLogger(__name__)


class Upstreams:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        rules: Sequence[RuleConfig],
        credentials: CredentialSource,
        metadata: MetadataStore | None = None,
    ) -> None:
        tokens = TokenCache()
        timeouts = UpstreamTimeouts(
            connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout
        )
        retry = RetryPolicy(attempts=settings.upstream_retries)
        shared = SharedUpstreamState(metadata) if metadata is not None else None
        # With a database, secrets come from the store (the environment as fallback) and are
        # looked up as clients authenticate, so a rotation needs no restart.
        stored = (
            StoredCredentials(
                SecretStore(metadata, SecretKeySource(settings.data_dir.resolve())), credentials
            )
            if metadata is not None
            else None
        )
        self._clients = {
            rule.prefix: RegistryClient(
                session,
                rule.upstream,
                name=rule.prefix,
                credentials=_credential_of(rule, credentials, stored),
                timeouts=timeouts,
                retry=retry,
                tokens=tokens,
                shared_state=shared,
            )
            for rule in rules
        }

    def client(self, rule: RuleConfig) -> RegistryClient:
        return self._clients[rule.prefix]

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
    """The registry clients' `ThrottleStore`, over the metadata database all workers share.

    A database hiccup never fails a pull: it is logged, and this worker goes on with what it
    knows itself.
    """

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata

    async def blocked_until(self, upstream: str) -> float | None:
        try:
            return await self._metadata.upstream_blocked_until(upstream)
        except SQLAlchemyError as exc:
            log.warning("reading the state of upstream %s failed: %s", upstream, exc)
            return None

    async def block(self, upstream: str, until: float) -> None:
        try:
            await self._metadata.block_upstream(upstream, until)
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
            await self._metadata.save_rate_limit(
                upstream,
                limit=state.limit,
                remaining=state.remaining,
                window=state.window,
                source=state.source,
                seen_at=state.seen_at,
            )
        except SQLAlchemyError as exc:
            log.warning("recording the rate limit of upstream %s failed: %s", upstream, exc)
