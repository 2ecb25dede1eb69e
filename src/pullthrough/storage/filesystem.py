"""Blobs as files under the data directory; see `layout.py` for the tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from pullthrough.storage.driver import PendingUpload, StoredObject

_READ_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemDriver:
    """Objects are files; `put_file` is fsync + atomic rename, so readers see all or nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key {key!r} escapes the storage root")
        return path

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(os.stat, self._path(key))).st_size
        except FileNotFoundError:
            return None

    async def stat(self, key: str) -> StoredObject | None:
        try:
            found = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError:
            return None
        return StoredObject(size=found.st_size, modified_at=found.st_mtime)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        fd = await asyncio.to_thread(os.open, self._path(key), os.O_RDONLY)
        try:
            position = start
            while end is None or position < end:
                want = _READ_CHUNK if end is None else min(_READ_CHUNK, end - position)
                chunk = await asyncio.to_thread(os.pread, fd, want, position)
                if not chunk:
                    return
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def upload(self, key: str) -> None:
        return None  # the fill's spool file is renamed into place (`put_file`)

    async def presigned_url(self, key: str, expires_in: float) -> str | None:
        return None

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._put_file, self._path(key), source)

    @staticmethod
    def _put_file(target: Path, source: Path) -> None:
        with open(source, "rb+") as handle:
            os.fsync(handle.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _fsync_dir(target.parent)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self._path(key))

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        base = self._path(prefix)
        found = await asyncio.to_thread(
            lambda: sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []
        )
        for path in found:
            yield path.relative_to(self.root).as_posix()

    async def pending_uploads(self) -> AsyncIterator[PendingUpload]:
        return
        yield  # an async generator of nothing: this driver never has uploads

    async def abort_upload(self, upload: PendingUpload) -> bool:
        return False

    async def sweep_uploads(self, older_than: float) -> int:
        return 0  # no uploads: spool files live in the data directory's tmp/, emptied at start

    async def ping(self) -> None:
        def check() -> None:
            if not os.access(self.root, os.W_OK):
                raise OSError(f"{self.root} is not writable")

        await asyncio.to_thread(check)

    async def close(self) -> None:
        return None
