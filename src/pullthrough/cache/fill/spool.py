"""Writing a fill's bytes to its spool file: hashed and written off the event loop, in order,
while the next bytes are still arriving from upstream.

Network reads come in small pieces (tens of KiB). While the writer is busy they are gathered
into writes of up to 1 MiB, so the thread hand-off is paid rarely when upstream is fast; when the
writer is idle they go at once, so a slow upstream's bytes reach readers without delay. A short
queue lets receiving, hashing and writing overlap instead of taking turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable

FLUSH_BYTES = 1 << 20
QUEUE_DEPTH = 4


class SpoolWriter:
    def __init__(self, fd: int, hasher: hashlib._Hash, on_written: Callable[[int], None]) -> None:
        self._fd = fd
        self._hasher = hasher
        self._on_written = on_written
        self._pending = bytearray()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._busy = False
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def write(self, data: bytes) -> None:
        self._pending += data
        idle = not self._busy and self._queue.empty()
        if idle or len(self._pending) >= FLUSH_BYTES:
            await self._hand_over()

    async def flush(self) -> None:
        """Wait until everything given so far is written and hashed."""
        if self._pending:
            await self._hand_over()
        await self._queue.put(None)
        await asyncio.shield(self._task)
        self._raise_error()
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _hand_over(self) -> None:
        self._raise_error()
        chunk, self._pending = bytes(self._pending), bytearray()
        await self._queue.put(chunk)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def _drain(self) -> None:
        while (chunk := await self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep the queue moving so the sender never blocks; it will see why
            self._busy = True
            try:
                await asyncio.to_thread(_write_and_hash, self._fd, chunk, self._hasher)
            except OSError as exc:
                self._error = exc
                continue
            finally:
                self._busy = False
            self._on_written(len(chunk))


def _write_and_hash(fd: int, chunk: bytes, hasher: hashlib._Hash) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    hasher.update(chunk)
