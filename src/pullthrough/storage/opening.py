"""The one place that opens blob storage from the settings: the filesystem under the data
directory, or an S3-compatible bucket when `storage.url` is `s3://bucket/prefix`.

S3 keys come from `storage.access_key_id`/`secret_access_key` (filled from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), or from the secret `storage.credentials_secret` in the secret store
(username: the access key id, password: the secret access key; looked up when the driver first
talks to S3, so the server can start before the secret is stored), or else from the AWS default
chain (shared config file, instance or pod role).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pullthrough.config import Settings
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout

if TYPE_CHECKING:
    from pullthrough.storage.s3 import CredentialsLookup, S3Credentials


class StorageCredentialError(Exception):
    """The storage credentials the settings name cannot be had."""


class _UsernamePassword(Protocol):
    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...


class SecretLookup(Protocol):
    """The secret store, as far as storage needs it (`SecretStore` is one)."""

    async def get(self, name: str) -> _UsernamePassword | None: ...


async def open_blob_storage(settings: Settings, secrets: SecretLookup | None = None) -> BlobDriver:
    """The blob driver these settings name (the data directory's folders created); the caller
    closes it. `secrets` is needed when `storage.credentials_secret` is set."""
    layout = DataLayout(settings.data_dir.resolve())
    layout.create()
    storage = settings.storage
    if storage.url is None:
        return FilesystemDriver(layout.blob_root)
    assert storage.bucket is not None
    # Imported here: botocore takes a while to load, and the filesystem needs none of it.
    from pullthrough.storage.s3 import S3Driver

    return S3Driver(
        storage.bucket,
        storage.prefix,
        endpoint=storage.endpoint,
        region=storage.region,
        path_style=storage.path_style,
        credentials=_credentials(settings, secrets),
    )


def _credentials(
    settings: Settings, secrets: SecretLookup | None
) -> S3Credentials | CredentialsLookup | None:
    from pullthrough.storage.s3 import S3Credentials

    storage = settings.storage
    name = storage.credentials_secret
    if name is not None:
        if secrets is None:
            raise StorageCredentialError(
                f"storage.credentials_secret {name!r}: the secret store is not open here"
            )
        store = secrets

        async def lookup() -> S3Credentials:
            found = await store.get(name)
            if found is None:
                raise StorageCredentialError(
                    f"storage.credentials_secret names {name!r}, which is not in the secret "
                    f"store: `pullthrough secrets put {name} --username ACCESS_KEY_ID` with "
                    "the secret access key on standard input"
                )
            return S3Credentials(found.username, found.password)

        return lookup
    if storage.access_key_id is not None and storage.secret_access_key is not None:
        return S3Credentials(storage.access_key_id, storage.secret_access_key)
    return None
