"""Rules' upstream credentials as the running server sees them: the secret store first, then the
`PULLTHROUGH_SECRET_<NAME>_*` environment variables (the interim source, kept as a fallback).

Each answer is remembered for a couple of seconds, so a `pullthrough secrets put` reaches every
worker process within that time without a database query per upstream request. A rule whose
secret is in neither place fails its pulls with a message that names the secret, rather than
pulling anonymously.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from pullthrough.access.secrets import SecretError, SecretStore
from pullthrough.config import RuleConfig
from pullthrough.errors import UpstreamUnavailable
from pullthrough.upstream.credentials import Credential, CredentialSource, EnvCredentialSource

log = logging.getLogger(__name__)

# How long a looked-up credential is used before the store is asked again: how soon a rotation
# takes effect in each worker.
LOOKUP_TTL = 1.0


class StoredCredentials:
    """Credentials by secret name: the store's, else `fallback`'s; each kept for `ttl` s."""

    def __init__(
        self,
        store: SecretStore,
        fallback: CredentialSource | None = None,
        *,
        ttl: float = LOOKUP_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._fallback = fallback if fallback is not None else EnvCredentialSource()
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, _Answer] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def secret(self, name: str) -> SecretCredential:
        """The provider a rule naming secret `name` gives its registry client."""
        return SecretCredential(self, name)

    async def lookup(self, name: str) -> Credential | None:
        """The credential secret `name` holds now (at most `ttl` seconds old); None when neither
        the store nor the environment has it. A stored secret that cannot be opened is an
        UpstreamUnavailable for the client, and an error in the log (once per `ttl`)."""
        answer = self._fresh(name)
        if answer is None:
            # One query per name at a time; the others wait for its answer.
            async with self._locks.setdefault(name, asyncio.Lock()):
                answer = self._fresh(name)
                if answer is None:
                    last = self._known.get(name)
                    answer = await self._read(name, last.credential if last else None)
                    self._known[name] = answer
        if answer.unusable:
            raise UpstreamUnavailable(
                f"the upstream credential {name!r} of this rule cannot be read; the server log "
                "says why and how to fix it",
                detail={"secret": name},
            )
        return answer.credential

    def _fresh(self, name: str) -> _Answer | None:
        answer = self._known.get(name)
        return answer if answer is not None and self._clock() < answer.until else None

    async def _read(self, name: str, last: Credential | None) -> _Answer:
        until = self._clock() + self._ttl
        try:
            stored = await self._store.get(name)
        except SecretError as exc:
            log.error("upstream credential %r cannot be used: %s", name, exc)
            return _Answer(None, until, unusable=True)
        except SQLAlchemyError as exc:
            # A database hiccup must not turn authenticated pulls anonymous: keep the last one.
            log.warning(
                "reading upstream credential %r failed, using the last known: %s", name, exc
            )
            return _Answer(last if last is not None else self._fallback.lookup(name), until)
        return _Answer(stored if stored is not None else self._fallback.lookup(name), until)


@dataclass(frozen=True, slots=True)
class _Answer:
    credential: Credential | None
    until: float  # clock time until which it is used without asking again
    unusable: bool = False


class SecretCredential:
    """One rule's `CredentialProvider`: secret `name`, through `StoredCredentials`."""

    def __init__(self, credentials: StoredCredentials, name: str) -> None:
        self._credentials = credentials
        self.name = name

    async def current(self) -> Credential | None:
        credential = await self._credentials.lookup(self.name)
        if credential is None:
            # Pulling anonymously instead would hide the mistake (and, against Docker Hub, spend
            # the anonymous rate limit): say which secret is missing and how to add it.
            raise UpstreamUnavailable(
                f"the rule's upstream credential is missing: {missing_secret_message(self.name)}",
                detail={"secret": self.name},
            )
        return credential

    def __repr__(self) -> str:
        return f"SecretCredential({self.name!r})"


class SecretMissing(Exception):
    """A rule names secret `name`, which neither the store nor the environment has."""

    def __init__(self, name: str) -> None:
        super().__init__(missing_secret_message(name))
        self.name = name


def missing_secret_message(name: str) -> str:
    """What to say about secret `name` being in neither the store nor the environment."""
    user_var, password_var = EnvCredentialSource.variable_names(name)
    return (
        f"secret {name!r} is not in the secret store or the server's environment: store it with "
        f"`pullthrough secrets put {name}` (takes effect without a restart), or export "
        f"{user_var} and {password_var} for the server and restart it"
    )


async def find_credential(
    store: SecretStore, name: str, environment: CredentialSource | None = None
) -> Credential | None:
    """The credential secret `name` holds now, read afresh: the store's, else the
    environment's; None when neither has it. SecretError when it is stored but cannot be
    opened."""
    stored = await store.get(name)
    if stored is not None:
        return stored
    return (environment if environment is not None else EnvCredentialSource()).lookup(name)


async def warn_about_credentials(rules: Sequence[RuleConfig], store: SecretStore) -> list[str]:
    """Log, at start, each rule's secret that neither the store nor the environment has, and
    each stored one that cannot be opened; returns the messages. Nothing here stops the server:
    secrets can be added while it runs."""
    messages: list[str] = []
    environment = EnvCredentialSource()
    for rule in rules:
        name = rule.credential
        if not name:
            continue
        try:
            if await store.get(name) is not None:
                continue
        except SecretError as exc:
            message = f"rules[{rule.prefix}].credential: {exc}"
            log.error(message)
            messages.append(message)
            continue
        if environment.lookup(name) is not None:
            continue
        message = (
            f"rules[{rule.prefix}].credential: pulls through {rule.prefix}/ fail until the "
            f"secret is added: {missing_secret_message(name)}"
        )
        log.warning(message)
        messages.append(message)
    return messages
