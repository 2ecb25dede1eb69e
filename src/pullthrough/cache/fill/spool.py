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
catches up. Bytes received but not yet in the file are kept (`unwritten`), so a reader at the
head of the download sends them from memory and never waits for the disk: writing to the page
cache, not the network, is often the slowest step of a fill. The queues bound what is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Callable

FLUSH_BYTES = 2 << 20
QUEUE_DEPTH = 4
# At most this many pieces per writev call (the system's IOV_MAX is 1024).
_WRITEV_PIECES = 512


class SpoolWriter:
    def __init__(self, fd: int, hasher: hashlib._Hash, on_written: Callable[[int], None]) -> None:
        self._fd = fd
        self._hasher = hasher
        self._on_written = on_written
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # Every piece received and not yet written, in order, the first one at byte `written`.
        self._unwritten: deque[bytes] = deque()
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
        self._unwritten.append(data)
        self.received += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        idle = not self._busy and self._queue.empty()
        if idle or self._pending_bytes >= FLUSH_BYTES:
            await self._hand_over()

    def unwritten(self, start: int, end: int) -> list[bytes]:
        """Bytes [start, end) as pieces, where `written` <= start <= end <= `received`: what a
        reader at the head of the download sends before the file has it."""
        pieces = []
        piece_end = self.received
        # From the newest piece back: a reader at the head wants the last few.
        for piece in reversed(self._unwritten):
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
                written = await self._loop.run_in_executor(None, _write, self._fd, batch)
            except OSError as exc:
                self._error = exc
                continue
            finally:
                self._busy = False
            self._landed(written)
            await self._to_hash.put(batch)
        await self._to_hash.put(None)

    def _landed(self, count: int) -> None:
        """`count` more bytes are in the file: drop them from memory (a batch is written whole,
        so they are whole pieces)."""
        self.written += count
        left = count
        while left > 0:
            left -= len(self._unwritten.popleft())
        self._on_written(count)

    async def _digest(self) -> None:
        while (batch := await self._to_hash.get()) is not None:
            await self._loop.run_in_executor(None, _hash, self._hasher, batch)


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
