"""The small protocol every blob driver implements: keys in, bytes out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class BlobDriver(Protocol):
    async def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no such object."""

    def local_path(self, key: str) -> Path | None:
        """A local file to `sendfile` from, when the driver keeps objects on local disk."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store a complete, verified local file under `key`; `source` is consumed."""

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every stored key under `prefix`."""

    async def ping(self) -> None:
        """Raise when the storage cannot be used (for /readyz)."""
