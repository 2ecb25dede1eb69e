"""A fill as its readers see it, in the process that downloads the blob or in one that follows:
read it while it grows, never past what is verified.

Readers never get the last byte before the digest is verified, so a client cannot receive a
complete wrong blob: on a mismatch every reader's stream fails short of the end.

A reader that comes after the commit, once the spool file is gone, reads the stored blob: the
committed local file when the driver keeps one, else the object through the driver.

`spans` gives the bytes as spans of the open spool file, for a sender that hands them to the
kernel (`sendfile`) without a pass through Python; `read` gives them as bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pullthrough.cache.fill.spool import SpoolWriter
from pullthrough.cache.fill.state import FillState
from pullthrough.errors import RegistryError, UpstreamUnavailable
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver

READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SpoolSpan:
    """Bytes [offset, offset + count) of a fill's open spool file, written and safe to send:
    never the blob's last byte before its digest is verified. Valid until the reader that gave
    it goes on (the file is closed when the reading ends)."""

    file: io.FileIO
    offset: int
    count: int


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
    # The writer of the download this process runs (None when it follows another's): a reader
    # at the head sends what it received before it is in the file.
    _spool: SpoolWriter | None = None

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

    async def spans(self, start: int, end: int | None) -> AsyncGenerator[SpoolSpan | bytes]:
        """Bytes [start, end) of the blob as they arrive, end None meaning to the end: spans of
        the spool file while there is one, else the stored object's bytes."""
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
                with io.FileIO(fd, "rb") as file:
                    async with contextlib.aclosing(self._spool_spans(file, start, end)) as spans:
                        async for span in spans:
                            yield span
                return
        async for chunk in read_stored(self.driver, self.storage_key, start, end):
            yield chunk

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob as they arrive, as bytes."""
        async with contextlib.aclosing(self.spans(start, end)) as pieces:
            async for piece in pieces:
                if isinstance(piece, bytes):
                    yield piece
                    continue
                async for chunk in span_bytes(piece):
                    if not chunk:
                        raise UpstreamUnavailable(f"fill of {self.digest} lost bytes it wrote")
                    yield chunk

    async def _spool_spans(
        self, file: io.FileIO, start: int, end: int | None
    ) -> AsyncGenerator[SpoolSpan | bytes]:
        position = start
        while end is None or position < end:
            state = self.state
            complete = state.bytes_verified
            if state is FillState.FAILED:
                assert self.error is not None
                raise self.error
            written = self._available(file.fileno())
            spool = self._spool
            received = written if spool is None else max(written, spool.received)
            # Hold back the final byte until the digest is verified.
            available = received if complete else received - 1
            limit = available if end is None else min(available, end)
            if position < min(limit, written):
                yield SpoolSpan(file, position, min(limit, written) - position)
                position = min(limit, written)
            elif position < limit:
                assert spool is not None
                for piece in spool.unwritten(position, limit):
                    yield piece
                    position += len(piece)
            elif complete:
                return
            else:
                await self._wait_change()


async def span_bytes(span: SpoolSpan) -> AsyncIterator[bytes]:
    """A span's bytes in pieces of at most READ_CHUNK, read off the event loop; an empty piece
    when the file holds fewer bytes than the span says."""
    position, end = span.offset, span.offset + span.count
    while position < end:
        chunk = await asyncio.to_thread(
            os.pread, span.file.fileno(), min(READ_CHUNK, end - position), position
        )
        yield chunk
        if not chunk:
            return
        position += len(chunk)


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
