"""One registry client per rule, sharing an HTTP session and a token cache."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from pullthrough.config import RuleConfig, Settings
from pullthrough.upstream.client import RegistryClient, RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.credentials import CredentialSource
from pullthrough.upstream.tokens import TokenCache


class Upstreams:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        rules: Sequence[RuleConfig],
        credentials: CredentialSource,
    ) -> None:
        tokens = TokenCache()
        timeouts = UpstreamTimeouts(
            connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout
        )
        retry = RetryPolicy(attempts=settings.upstream_retries)
        self._clients = {
            rule.prefix: RegistryClient(
                session,
                rule.upstream,
                name=rule.prefix,
                credential=credentials.lookup(rule.credential) if rule.credential else None,
                timeouts=timeouts,
                retry=retry,
                tokens=tokens,
            )
            for rule in rules
        }

    def client(self, rule: RuleConfig) -> RegistryClient:
        return self._clients[rule.prefix]

    def all(self) -> list[RegistryClient]:
        return list(self._clients.values())
