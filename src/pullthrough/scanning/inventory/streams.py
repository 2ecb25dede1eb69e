"""A layer's compressed bytes, from an async iterator on the event loop to a file-like reader in
a thread, decompressed on the way (gzip, zstd, or none, told by the first bytes).

The event loop side puts chunks into a queue of `QUEUE_CHUNKS`; when it is full it waits for the
thread to take one, so at most that many chunks are held whatever the layer's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import zlib
from typing import Protocol

import zstandard

QUEUE_CHUNKS = 4
# zstd holds its window in memory: 32 MiB covers every level up to 19 (tools use 3); a layer
# compressed with a larger window (--long, --ultra) is reported unreadable instead.
ZSTD_MAX_WINDOW = 32 * 1024 * 1024
READ_SIZE = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class FeedAborted(Exception):
    """The event loop side stopped feeding (its source failed, or it was cancelled)."""


class ChunkFeed:
    """Chunks handed from the event loop (`put`, `close`, `abort`) to one reading thread
    (`read`, `peek`, `finish`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        self._space = asyncio.Event()
        self._aborted = False
        self._finished = False  # the reader stopped: nothing more is taken
        self._ended = False  # the reader saw the end of the chunks
        self._buffer = b""
        self._offset = 0

    # -- the event loop's side

    async def put(self, chunk: bytes | None) -> bool:
        """Hand over a chunk (None: the end); False when the reader has stopped taking them."""
        while not self._finished:
            try:
                self._queue.put_nowait(chunk)
                return True
            except queue.Full:
                self._space.clear()
                if self._queue.full() and not self._finished:
                    await self._space.wait()
        return False

    def abort(self) -> None:
        self._aborted = True
        # When the queue is full the reader is not waiting: it sees the flag at its next read.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    # -- the thread's side

    def read(self, size: int = -1, /) -> bytes:
        if not self._fill(1):
            return b""
        if size < 0:
            size = len(self._buffer) - self._offset
        piece = self._buffer[self._offset : self._offset + size]
        self._offset += len(piece)
        return piece

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return self._buffer[self._offset : self._offset + size]

    def finish(self) -> None:
        self._finished = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._space.set)

    def _fill(self, size: int) -> bool:
        """At least `size` bytes buffered, or all that is left; False at the end."""
        while len(self._buffer) - self._offset < size and not self._ended:
            chunk = self._queue.get()
            try:
                self._loop.call_soon_threadsafe(self._space.set)
            except RuntimeError:
                self._aborted = True
            if self._aborted:
                raise FeedAborted
            if chunk is None:
                self._ended = True
                break
            self._buffer = self._buffer[self._offset :] + chunk
            self._offset = 0
        return len(self._buffer) > self._offset


class GzipReader:
    """gzip decompressed as read, member after member."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""

    def read(self, size: int = -1, /) -> bytes:
        size = READ_SIZE if size < 0 else size
        pieces: list[bytes] = []
        total = 0
        while total < size:
            if self._decompressor.eof:
                rest = self._decompressor.unused_data or self._raw.read(READ_SIZE)
                if not rest.strip(b"\0"):
                    break  # the last member, perhaps followed by zero padding
                self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._input = rest
            if not self._input:
                self._input = self._raw.read(READ_SIZE)
                if not self._input:
                    raise EOFError("the gzip stream ends before its last member does")
            piece = self._decompressor.decompress(self._input, size - total)
            self._input = self._decompressor.unconsumed_tail
            pieces.append(piece)
            total += len(piece)
        return b"".join(pieces)


def decompressed(feed: ChunkFeed) -> Readable:
    """The layer's tar stream, whatever compression its first bytes show."""
    magic = feed.peek(4)
    if magic.startswith(_GZIP_MAGIC):
        return GzipReader(feed)
    if magic.startswith(_ZSTD_MAGIC):
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        reader: Readable = decompressor.stream_reader(
            feed,  # type: ignore[arg-type]  # it reads, which is all stream_reader does
            read_size=READ_SIZE,
            read_across_frames=True,
        )
        return reader
    return feed
