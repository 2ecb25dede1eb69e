"""Giving back the memory a burst of downloads used: when the last download of a process ends,
the C allocator's free memory is returned to the system (glibc's `malloc_trim`).

A download's buffers are freed when it ends, but glibc keeps freed memory in its arenas (one
per thread that allocated: the event loop and the writer threads) for reuse, so a worker that
filled a large blob kept tens of MiB it no longer used. Trimming once the process has no
download in progress costs a few milliseconds, off the event loop, and nothing while downloads
run. Where the C library has no `malloc_trim` (musl), nothing is done.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # at the first download's end: a worker that never downloads never loads it
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Downloads:
    """How many downloads this process runs; the heap is trimmed when the last one ends."""

    running = 0
    _trimming: asyncio.Future[None] | None = None

    @classmethod
    def started(cls) -> None:
        cls.running += 1

    @classmethod
    def ended(cls) -> None:
        cls.running -= 1
        if cls.running == 0 and cls._trimming is None:
            trimming = asyncio.get_running_loop().run_in_executor(None, _trim)
            trimming.add_done_callback(cls._trimmed)
            cls._trimming = trimming

    @classmethod
    def _trimmed(cls, _future: asyncio.Future[None]) -> None:
        cls._trimming = None


def _trim() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
