"""Writing a fill's bytes to its spool file: written and hashed off the event loop, in order,
while the next bytes are still arriving from upstream.

Network reads come as the socket delivers them (up to a few hundred KiB each). The pieces are
kept as they are, never joined: while the writer thread is busy they gather into one batch of
up to FLUSH_BYTES, which the thread writes with one `writev` and hashes piece by piece (hashing
releases the GIL), so the thread hand-off is paid rarely when upstream is fast and the loop
copies no byte. When the writer is idle a piece goes at once, so a slow upstream's bytes reach
readers without delay. Writing and hashing are two stages with a short queue before each, so
receiving, writing and hashing all overlap (hashing is the slowest of the three).

`on_written` is called (on the loop) as each batch lands in the file, before it is hashed:
readers may send those bytes (all but the blob's last one; see `reading.py`) while the hash
catches up. Bytes received are kept in memory until they are written and hashed (`kept_from`,
`in_memory`), so a reader at the head of the download sends them from memory and never waits
for the disk or reads back what was just written. The queues bound what is kept.

Where the file system allows it, the file is written with O_DIRECT (`SpoolFile`): the bytes go
from one reused, aligned buffer straight to the disk instead of into newly allocated page-cache
pages, which was the costliest step of a fill in CPU (and the most variable: on a virtual
machine, fresh pages can cost several times the copy). A reader behind the head reads them back
from the disk, as a warm pull of a blob not in the page cache does; the blob's last bytes (short
of a whole block) are written through the page cache when the download ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
from collections import deque
from collections.abc import Callable

FLUSH_BYTES = 2 << 20
QUEUE_DEPTH = 4
# At most this many pieces per writev call (the system's IOV_MAX is 1024).
_WRITEV_PIECES = 512
# O_DIRECT writes: their offset and length are multiples of ALIGNMENT (a page: enough for disks
# with 512-byte or 4 KiB sectors), from a page-aligned buffer of DIRECT_SEGMENT bytes.
ALIGNMENT = 4096
DIRECT_SEGMENT = 1 << 20


class SpoolWriter:
    def __init__(self, fd: int, hasher: hashlib._Hash, on_written: Callable[[int], None]) -> None:
        self._file = SpoolFile(fd)
        self._hasher = hasher
        self._on_written = on_written
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # Every piece received and not yet written and hashed, in order, the first one at
        # byte `kept_from`.
        self._kept: deque[bytes] = deque()
        self.kept_from = 0
        self._hashed = 0
        self.received = 0
        self.written = 0
        self._queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(QUEUE_DEPTH)
        self._to_hash: asyncio.Queue[list[bytes] | None] = asyncio.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._busy = False
        self._loop = asyncio.get_running_loop()
        self._tasks = self._start()

    def _start(self) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
        return self._loop.create_task(self._drain()), self._loop.create_task(self._digest())

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._kept.append(data)
        self.received += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        idle = not self._busy and self._queue.empty()
        if idle or self._pending_bytes >= FLUSH_BYTES:
            await self._hand_over()

    def in_memory(self, start: int, end: int) -> list[bytes]:
        """Bytes [start, end) as pieces, where `kept_from` <= start <= end <= `received`: what
        a reader at the head of the download sends, whether or not the file has it yet."""
        pieces = []
        piece_end = self.received
        # From the newest piece back: a reader at the head wants the last few.
        for piece in reversed(self._kept):
            piece_start = piece_end - len(piece)
            if piece_start < end:
                pieces.append(
                    piece[max(start - piece_start, 0) : min(end, piece_end) - piece_start]
                )
            if piece_start <= start:
                break
            piece_end = piece_start
        pieces.reverse()
        return pieces

    async def flush(self) -> None:
        """Wait until everything given so far is written and hashed."""
        if self._pending:
            await self._hand_over()
        await self._queue.put(None)
        for task in self._tasks:
            await asyncio.shield(task)
        self._raise_error()
        self._tasks = self._start()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _hand_over(self) -> None:
        self._raise_error()
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        await self._queue.put(batch)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def _drain(self) -> None:
        """Write each batch, then pass it on to be hashed; None ends both stages."""
        while (batch := await self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep the queue moving so the sender never blocks; it will see why
            self._busy = True
            try:
                written = await self._loop.run_in_executor(None, _append, self._file, batch)
            except OSError as exc:
                self._error = exc
                continue
            finally:
                self._busy = False
            self._landed(written)
            await self._to_hash.put(batch)
        if self._error is None:
            try:  # the bytes an O_DIRECT write could not take yet (less than a block)
                self._landed(await self._loop.run_in_executor(None, self._file.finish))
            except OSError as exc:
                self._error = exc
        await self._to_hash.put(None)

    def _landed(self, count: int) -> None:
        """`count` more bytes are in the file."""
        if count:
            self.written += count
            self._release()
            self._on_written(count)

    async def _digest(self) -> None:
        while (batch := await self._to_hash.get()) is not None:
            await self._loop.run_in_executor(None, _hash, self._hasher, batch)
            self._hashed += sum(map(len, batch))
            self._release()

    def _release(self) -> None:
        """Let go of the pieces both in the file and hashed (a direct write may hold back a
        piece's last bytes until more come)."""
        done = min(self.written, self._hashed)
        while self._kept and self.kept_from + len(self._kept[0]) <= done:
            self.kept_from += len(self._kept.popleft())


class SpoolFile:
    """The spool file as the writer thread appends to it (one call at a time): with O_DIRECT
    where the file system takes it, else through the page cache.

    An O_DIRECT write must start and end on a block boundary: bytes are copied into an aligned
    buffer and written a DIRECT_SEGMENT at a time, and what is left short of a block waits for
    the next batch, or for `finish`, which writes it through the page cache.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.direct = _set_direct(fd, True)
        self._buffer: mmap.mmap | None = None
        self._held = 0  # bytes at the buffer's start, not yet written

    def append(self, pieces: list[bytes]) -> int:
        """Append every piece; the number of bytes that reached the file."""
        if not self.direct:
            return self._write_rest() + _write(self.fd, pieces)
        if self._buffer is None:
            self._buffer = mmap.mmap(-1, DIRECT_SEGMENT)
        buffer, done = self._buffer, 0
        for piece in pieces:
            offset = 0
            with memoryview(piece) as view:  # one copy, into the buffer
                while offset < len(view):
                    take = min(len(view) - offset, DIRECT_SEGMENT - self._held)
                    buffer[self._held : self._held + take] = view[offset : offset + take]
                    self._held += take
                    offset += take
                    if self._held == DIRECT_SEGMENT:
                        done += self._write_held(DIRECT_SEGMENT)
        whole_blocks = self._held - self._held % ALIGNMENT
        if whole_blocks:
            done += self._write_held(whole_blocks)
        return done

    def finish(self) -> int:
        """Write what is held (less than a block) through the page cache; later appends go
        that way too. The number of bytes written."""
        if self.direct:
            self.direct = False
            _set_direct(self.fd, False)
        written = self._write_rest()
        self._buffer = None
        return written

    def _write_rest(self) -> int:
        """Write what the buffer holds through the page cache (O_DIRECT is off)."""
        held, self._held = self._held, 0
        if not held:
            return 0
        assert self._buffer is not None
        return _write(self.fd, [self._buffer[:held]])

    def _write_held(self, count: int) -> int:
        """Write the buffer's first `count` bytes (whole blocks); keep the rest at its start."""
        assert self._buffer is not None
        buffer = self._buffer
        written = 0
        try:
            with memoryview(buffer) as view:
                while written < count:
                    written += os.write(self.fd, view[written:count])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # The file system refused this direct write after all: the page cache from here.
            self.direct = False
            _set_direct(self.fd, False)
            written += _write(self.fd, [buffer[written:count]])
        rest = self._held - count
        buffer[:rest] = buffer[count : self._held]
        self._held = rest
        return written


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; whether it is on (a file system without direct I/O,
    such as an older tmpfs, refuses it)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on


def _append(spool_file: SpoolFile, pieces: list[bytes]) -> int:
    """Append every piece to the spool file (in the writer thread); the bytes that landed."""
    return spool_file.append(pieces)


def _write(fd: int, pieces: list[bytes]) -> int:
    """Append every piece to `fd`; the number of bytes written."""
    total = 0
    views = [memoryview(piece) for piece in pieces]
    while views:
        batch = views[:_WRITEV_PIECES]
        done = os.writev(fd, batch)
        total += done
        # A short write (rare on a regular file): drop what went, go on from there.
        while done:
            if done >= len(views[0]):
                done -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][done:]
                done = 0
    return total


def _hash(hasher: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)
