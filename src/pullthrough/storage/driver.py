"""The small protocol every blob driver implements: keys in, bytes out.

Two drivers: the filesystem under the data directory (`filesystem.py`) and S3-compatible object
storage (`s3.py`). A driver never decides whether bytes are right: the fill verifies them first,
then hands the driver a finished local file (`put_file`) or completes a streamed upload
(`upload`), and only then is the object visible at its key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What storage says about one object."""

    size: int
    modified_at: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """An upload begun and neither completed nor aborted (S3's multipart upload)."""

    key: str
    upload_id: str
    initiated_at: float  # seconds since the epoch


class BlobUpload(Protocol):
    """An upload to one key that nobody sees until `complete`: S3's multipart upload."""

    async def write(self, chunk: bytes) -> None:
        """The next bytes of the object, in order (they are not verified yet)."""

    async def complete(self) -> None:
        """Every byte was written and verified: make the object visible at its key."""

    async def abort(self) -> None:
        """Discard what was written; the key stays as it was. Safe to call more than once."""


class BlobDriver(Protocol):
    async def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no such object."""

    async def stat(self, key: str) -> StoredObject | None:
        """The stored object's size and age, or None when there is no such object."""

    def local_path(self, key: str) -> Path | None:
        """A local file to `sendfile` from, when the driver keeps objects on local disk."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the object (end None: to its end); FileNotFoundError when
        there is no such object."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store a complete, verified local file under `key`; `source` is consumed."""

    def upload(self, key: str) -> BlobUpload | None:
        """A streamed upload to `key`, written while the fill downloads; None when the driver
        stores the finished spool file instead (`put_file`), as the filesystem does."""

    async def presigned_url(self, key: str, expires_in: float) -> str | None:
        """A URL that lets its bearer GET the object for `expires_in` seconds, or None when
        the driver cannot hand out such URLs (the filesystem)."""

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every stored key under `prefix`."""

    def pending_uploads(self) -> AsyncIterator[PendingUpload]:
        """Every upload begun and not yet completed or aborted."""

    async def abort_upload(self, upload: PendingUpload) -> bool:
        """Abort one pending upload; False when it had completed or been aborted meanwhile."""

    async def sweep_uploads(self, older_than: float) -> int:
        """Abort uploads begun before `older_than` (epoch seconds) that never completed — a
        replica killed mid-fill leaves one; how many were aborted."""

    async def ping(self) -> None:
        """Raise when the storage cannot be used (for /readyz)."""

    async def close(self) -> None:
        """Release connections; the driver is not used afterwards."""
