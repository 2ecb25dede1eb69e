"""A fill as its readers see it, in the process that downloads the blob or in one that follows:
read it while it grows, never past what is verified.

Readers never get the last byte before the digest is verified, so a client cannot receive a
complete wrong blob: on a mismatch every reader's stream fails short of the end.

A reader that comes after the commit, once the spool file is gone, reads the stored blob: the
committed local file when the driver keeps one, else the object through the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from pullthrough.cache.fill.state import FillState
from pullthrough.errors import RegistryError, UpstreamUnavailable
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver

READ_CHUNK = 1 << 20


class Fill(ABC):
    digest: Digest
    repository: str
    size: int | None
    state: FillState
    error: RegistryError | None
    spool_path: Path
    # Where the blob lives once committed, for a reader that opens after the rename; None when
    # the driver keeps no local file: such a reader reads `storage_key` through `driver`.
    committed_path: Path | None
    driver: BlobDriver
    storage_key: str

    @abstractmethod
    async def wait_started(self) -> None:
        """Wait until the size is known; raise the fill's error if it failed first."""

    async def wait_done(self) -> None:
        """Wait until every byte is verified; raise the fill's error if it failed first."""
        while self.state is FillState.RUNNING:
            await self._wait_change()
        if self.state is FillState.FAILED:
            assert self.error is not None
            raise self.error

    @abstractmethod
    def _available(self, fd: int) -> int:
        """How many bytes of the spool file are written now."""

    @abstractmethod
    async def _wait_change(self) -> None:
        """Return when the fill may have progressed."""

    @abstractmethod
    async def _spool_gone(self) -> None:
        """The spool file is gone: settle the state (committed or failed) if it may not be."""

    def _stored_elsewhere(self) -> bool:
        return self.state is FillState.COMMITTED and self.committed_path is None

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob as they arrive; end None means to the end."""
        if not self._stored_elsewhere():
            try:
                fd = await asyncio.to_thread(
                    _open_for_reading, self.spool_path, self.committed_path
                )
            except FileNotFoundError:
                await self._spool_gone()
                if not self._stored_elsewhere():
                    if self.error is not None:
                        raise self.error from None
                    raise UpstreamUnavailable(f"the fill of {self.digest} is gone") from None
            else:
                async with contextlib.aclosing(self._read_spool(fd, start, end)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
        async for chunk in read_stored(self.driver, self.storage_key, start, end):
            yield chunk

    async def _read_spool(self, fd: int, start: int, end: int | None) -> AsyncGenerator[bytes]:
        try:
            position = start
            while end is None or position < end:
                state = self.state
                complete = state.bytes_verified
                if state is FillState.FAILED:
                    assert self.error is not None
                    raise self.error
                written = self._available(fd)
                # Hold back the final byte until the digest is verified.
                available = written if complete else written - 1
                limit = available if end is None else min(available, end)
                if position < limit:
                    chunk = await asyncio.to_thread(
                        os.pread, fd, min(READ_CHUNK, limit - position), position
                    )
                    if not chunk:
                        raise UpstreamUnavailable(f"fill of {self.digest} lost bytes it wrote")
                    position += len(chunk)
                    yield chunk
                elif complete:
                    return
                else:
                    await self._wait_change()
        finally:
            os.close(fd)


def _open_for_reading(spool: Path, committed: Path | None) -> int:
    try:
        return os.open(spool, os.O_RDONLY)
    except FileNotFoundError:
        # The fill committed (renamed the spool) between our check and the open.
        if committed is None:
            raise
        return os.open(committed, os.O_RDONLY)


async def read_stored(
    driver: BlobDriver, key: str, start: int, end: int | None
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of a stored object, the driver's reader closed however this ends."""
    chunks = driver.read(key, start, end)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
