"""The secret store: named upstream credentials, sealed with AES-GCM in the metadata database.

A secret (e.g. `pullthrough/docker-hub`) holds `{"username": …, "accessToken": …}`, the shape
ECR's pull-through cache uses (`password` is accepted for `accessToken`). Values go in with
`put` and come out only as a `Credential` for the upstream client, whose repr hides the
password; `list` gives names and timestamps, never values.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pullthrough.access.sealing import SealBroken, SecretKey, SecretKeyError, SecretKeySource
from pullthrough.access.secret_values import (
    SecretError,
    SecretUnreadable,
    SecretValueInvalid,
    credential_from_json,
    credential_to_json,
    validate_secret_name,
)
from pullthrough.config import Settings
from pullthrough.metadata.opening import metadata_for
from pullthrough.metadata.secret_rows import SecretListing
from pullthrough.metadata.store import MetadataStore
from pullthrough.upstream.credentials import Credential

__all__ = [
    "SecretError",
    "SecretListing",
    "SecretStore",
    "SecretUnreadable",
    "SecretValueInvalid",
    "credential_from_json",
    "credential_to_json",
    "open_secret_store",
    "secret_store",
    "validate_secret_name",
]


class SecretStore:
    """Named credentials in the metadata database, sealed with the key from `keys`."""

    def __init__(self, metadata: MetadataStore, keys: SecretKeySource) -> None:
        self._metadata = metadata
        self._keys = keys

    def __repr__(self) -> str:
        return f"SecretStore(key from {self._keys.describe()})"

    async def put(self, name: str, value: Credential) -> bool:
        """Store `value` under `name` (replacing any); True when the secret is new.

        The key is created on first use when there is none.
        """
        validate_secret_name(name)
        key = await self._key(create=True)
        assert key is not None  # created when missing
        nonce, ciphertext = key.seal(name, credential_to_json(value))
        return await self._metadata.secrets.save(
            name, nonce=nonce, ciphertext=ciphertext, key_id=key.key_id
        )

    async def get(self, name: str) -> Credential | None:
        """The credential stored as `name`, None when there is none; SecretUnreadable when it
        is there but cannot be opened."""
        record = await self._metadata.secrets.get(name)
        if record is None:
            return None
        key = await self._key(create=False)
        if key is None:
            raise SecretUnreadable(
                f"secret {name!r} is stored but there is no key to open it: set the "
                f"PULLTHROUGH_SECRET_KEY it was stored with, or restore {self._keys.key_file} "
                f"from backup (or store it again with `pullthrough secrets put {name}`)"
            )
        if record.key_id != key.key_id:
            raise SecretUnreadable(
                f"secret {name!r} was stored under another key than {key.source} "
                f"(key id {record.key_id}, this key is {key.key_id}): use the key it was stored "
                f"with, or store it again with `pullthrough secrets put {name}`"
            )
        try:
            plaintext = key.open(name, record.nonce, record.ciphertext)
        except SealBroken:
            raise SecretUnreadable(
                f"secret {name!r} fails authentication: its database row was altered or copied "
                f"from another secret; store it again with `pullthrough secrets put {name}`"
            ) from None
        try:
            return credential_from_json(plaintext)
        except SecretValueInvalid as exc:
            raise SecretUnreadable(f"secret {name!r} holds an unusable value: {exc}") from None

    async def matches(self, name: str, candidate: Credential) -> bool | None:
        """Whether secret `name` holds exactly `candidate` (None when there is no such secret).
        Compared with `hmac.compare_digest`, which takes no early exit at the first differing
        byte, so a caller learns one bit and not how much of a guess was right."""
        stored = await self.get(name)
        if stored is None:
            return None
        return hmac.compare_digest(credential_to_json(stored), credential_to_json(candidate))

    async def list(self) -> list[SecretListing]:
        """Names and timestamps of every secret, by name; values are never listed."""
        return await self._metadata.secrets.listing()

    async def delete(self, name: str) -> bool:
        """Forget the secret `name`; False when there was none."""
        return await self._metadata.secrets.delete(name)

    async def _key(self, *, create: bool) -> SecretKey | None:
        # Reading (or creating and fsyncing) the key file is blocking I/O: off the event loop.
        try:
            return await asyncio.to_thread(self._keys.load, create=create)
        except SecretKeyError as exc:
            raise SecretError(str(exc)) from None


def secret_store(metadata: MetadataStore, settings: Settings) -> SecretStore:
    """The secret store these settings name, over `metadata`: the one place that builds it."""
    return SecretStore(metadata, SecretKeySource(settings.data_dir.resolve()))


@asynccontextmanager
async def open_secret_store(settings: Settings) -> AsyncIterator[SecretStore]:
    """The secret store these settings name, its metadata database open for a `with` block."""
    async with metadata_for(settings) as metadata:
        yield secret_store(metadata, settings)
