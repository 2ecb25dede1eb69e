"""AWS access keys for the ECR-compatible API: an access key id and a secret access key, mapped
to one principal (a user or an API key), so that the AWS CLI, SDKs and Terraform sign their
requests as that principal and the registry policy decides what they may do.

Signature Version 4 is an HMAC keyed by the secret itself, so the server must be able to read
the secret back: it is sealed with the secret store's key (AES-GCM, access/sealing.py), never
hashed, and shown once when created. Each process remembers the keys it opened until the ACCESS
revision moves (a key or principal created, changed or deleted, in any process), so a deleted
key, or a key whose principal is deleted, is refused everywhere within the revision bound.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.access.sealing import SealBroken, SecretKey, SecretKeyError, SecretKeySource
from pullthrough.access.stamps import RevisionSource
from pullthrough.metadata.aws_keys import AwsKeyRecord, AwsKeyStore
from pullthrough.metadata.principals import AccessStore, PrincipalRow
from pullthrough.metadata.revisions import ACCESS

# AWS's own ids start with AKIA (long-term) or ASIA (temporary); PTKA says whose these are.
ACCESS_KEY_ID_PREFIX = "PTKA"
_ID_ALPHABET = string.ascii_uppercase + "234567"
_MAX_REMEMBERED = 4096


class AwsKeyError(Exception):
    """A key cannot be created or opened; the message says what to do."""


@dataclass(frozen=True, slots=True)
class AwsKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    principal: PrincipalRow


@dataclass(frozen=True, slots=True)
class CreatedKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    principal: str
    created_at: float


def _sealed_name(access_key_id: str) -> str:
    # The associated data of the seal: a row copied under another id does not open.
    return f"aws-access-key/{access_key_id}"


def new_access_key_id() -> str:
    return ACCESS_KEY_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return secrets.token_urlsafe(30)  # 40 characters, as AWS's


class AwsKeys:
    """Creating, listing and deleting keys, and finding the key a request was signed with."""

    def __init__(
        self, engine: AsyncEngine, sealing: SecretKeySource, revisions: RevisionSource
    ) -> None:
        self.store = AwsKeyStore(engine)
        self._principals = AccessStore(engine)
        self._sealing = sealing
        self._revisions = revisions
        self._revision: int | None = None
        self._remembered: dict[str, AwsKey | None] = {}

    async def create(self, principal: str) -> CreatedKey:
        """A new key for `principal` (which must exist); its secret is returned only here."""
        if await self._principals.principal(principal) is None:
            raise AwsKeyError(
                f"no principal named {principal!r}: add it first (`pullthrough users add` or "
                "`pullthrough apikeys create`)"
            )
        key = await self._key(create=True)
        assert key is not None  # created when missing
        access_key_id, secret = new_access_key_id(), new_secret_access_key()
        nonce, ciphertext = key.seal(_sealed_name(access_key_id), secret.encode())
        now = time.time()
        await self.store.save(
            AwsKeyRecord(access_key_id, principal, nonce, ciphertext, key.key_id, now)
        )
        return CreatedKey(access_key_id, secret, principal, now)

    async def find(self, access_key_id: str) -> AwsKey | None:
        """The key with this id and its principal as they are now; None when either is gone."""
        revision = await self._revisions.value(ACCESS)
        if revision != self._revision:
            self._remembered.clear()
            self._revision = revision
        if access_key_id in self._remembered:
            return self._remembered[access_key_id]
        found = await self._open(access_key_id)
        # Kept only when no change was seen while reading: the rows may predate it otherwise.
        if self._revision == revision:
            if len(self._remembered) >= _MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[access_key_id] = found
        return found

    async def _open(self, access_key_id: str) -> AwsKey | None:
        record = await self.store.get(access_key_id)
        if record is None:
            return None
        principal = await self._principals.principal(record.principal)
        if principal is None:
            return None
        key = await self._key(create=False)
        if key is None or key.key_id != record.key_id:
            raise AwsKeyError(
                f"access key {access_key_id} was sealed under another secret key than "
                f"{self._sealing.describe()}: create another with `pullthrough access-keys create`"
            )
        try:
            secret = key.open(_sealed_name(access_key_id), record.nonce, record.ciphertext)
        except SealBroken:
            raise AwsKeyError(
                f"access key {access_key_id} fails authentication: its row was altered"
            ) from None
        return AwsKey(access_key_id, secret.decode(), principal)

    async def _key(self, *, create: bool) -> SecretKey | None:
        try:
            return await asyncio.to_thread(self._sealing.load, create=create)
        except SecretKeyError as exc:
            raise AwsKeyError(str(exc)) from None
