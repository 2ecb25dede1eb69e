"""Upstream credentials: a username/password pair, and where rules look them up by secret name."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_ENV_PREFIX = "PULLTHROUGH_SECRET_"


@dataclass(frozen=True)
class Credential:
    """A username and password for an upstream registry; the password never appears in a repr."""

    username: str
    password: str = field(repr=False)

    @property
    def account(self) -> str:
        """Whose tokens these are: the username and a digest of the password under a key that
        is random per process (so it reveals nothing), so that after a rotation no token
        fetched with the old password is reused."""
        digest = hashlib.blake2b(self.password.encode(), key=_ACCOUNT_KEY, digest_size=8)
        return f"{self.username}#{digest.hexdigest()}"


_ACCOUNT_KEY = os.urandom(16)


class CredentialSource(Protocol):
    """Resolves a rule's secret name (e.g. `pullthrough/docker-hub`) to a credential."""

    def lookup(self, name: str) -> Credential | None: ...


class CredentialProvider(Protocol):
    """One rule's credential as it is now: asked each time the client authenticates, so a
    rotated secret is used without a restart."""

    async def current(self) -> Credential | None: ...


class FixedCredential:
    """A credential that never changes (or none: anonymous)."""

    def __init__(self, credential: Credential | None) -> None:
        self._credential = credential

    async def current(self) -> Credential | None:
        return self._credential


class SourceCredential:
    """The secret `name`, looked up in a `CredentialSource` each time it is asked for."""

    def __init__(self, source: CredentialSource, name: str) -> None:
        self._source = source
        self._name = name

    async def current(self) -> Credential | None:
        return self._source.lookup(self._name)


class EnvCredentialSource:
    """Credentials from environment variables, until the encrypted secret store lands.

    Secret `pullthrough/docker-hub` is read from
    `PULLTHROUGH_SECRET_PULLTHROUGH_DOCKER_HUB_USERNAME` and `..._PASSWORD` (upper-case, each run
    of non-alphanumerics becomes `_`); both must be set and non-empty.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # Read os.environ at lookup time (not copied here) so a test or an operator's reload sees
        # changes; an explicit mapping is used as given.
        self._environ = environ

    def lookup(self, name: str) -> Credential | None:
        environ = os.environ if self._environ is None else self._environ
        user_var, password_var = self.variable_names(name)
        username = environ.get(user_var)
        password = environ.get(password_var)
        # An empty value counts as unset: a half-configured secret must not send empty Basic auth.
        if not username or not password:
            return None
        return Credential(username, password)

    @staticmethod
    def variable_names(name: str) -> tuple[str, str]:
        stem = _NON_ALNUM.sub("_", name).upper()
        return f"{_ENV_PREFIX}{stem}_USERNAME", f"{_ENV_PREFIX}{stem}_PASSWORD"
