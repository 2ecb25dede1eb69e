"""Exclusive locks shared by every process that uses one data directory.

Whoever holds a lock does the work (fetch a tag, fill a blob, delete a blob's file); the others
wait for its result or leave the work to it. `Locks` is the one interface; `FileLocks` is its
implementation for one host: an `flock` on a file in the spool directory, released by the kernel
when its process dies, so nothing waits for a dead process. `LeaseLocks`
(`metadata/lease_locks.py`) implements the same two protocols with lease rows in the metadata
database, for replicas sharing one PostgreSQL; `metadata/opening.py::open_locks` picks one.

    <data_dir>/tmp/
    ├── sha256-<hex>.lock          the fill lock of one blob
    └── <hash32>.lock              a lock on any other key (a tag, a manifest digest)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

# How often a lock another process holds is tried again.
POLL_SECONDS = 0.01


class ExclusiveLock(Protocol):
    """A lock at most one holder has at a time, across processes."""

    async def try_acquire(self) -> bool:
        """Take the lock if it is free now; whether it was taken."""

    async def acquire(self) -> None:
        """Take the lock, waiting as long as another holder has it."""

    async def release(self) -> None:
        """Give the lock up; releasing a lock not held does nothing."""

    async def is_free(self) -> bool:
        """Whether nobody holds the lock now (its holder is gone, say). A lock spanning replicas
        may answer from a look taken up to one poll interval ago."""

    async def holder_url(self) -> str | None:
        """The advertise URL of the replica whose process holds the lock now; None when nobody
        holds it, or when the lock does not span hosts (its holder is on this one)."""


class Locks(Protocol):
    """Where the locks of one data directory come from."""

    def named(self, *parts: str) -> ExclusiveLock:
        """The lock on an arbitrary key (a repository and tag, a manifest digest, …)."""

    def blob_fill(self, algorithm: str, hex_digest: str) -> ExclusiveLock:
        """The lock of one blob's fill: held by the process downloading the blob, and taken by
        garbage collection to delete the blob's file."""

    async def close(self) -> None:
        """Give up every lock this process still holds (it is stopping)."""


@contextlib.asynccontextmanager
async def holding(lock: ExclusiveLock) -> AsyncIterator[None]:
    """Hold `lock` for the body of the `async with`."""
    await lock.acquire()
    try:
        yield
    finally:
        await lock.release()


class FileLocks:
    """Locks as `flock`s on files in one directory (the data directory's `tmp/`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def named(self, *parts: str) -> FileLock:
        name = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
        return FileLock(self.directory / f"{name}.lock")

    def blob_fill(self, algorithm: str, hex_digest: str) -> FileLock:
        return FileLock(self.directory / f"{algorithm}-{hex_digest}.lock")

    async def close(self) -> None:
        """Nothing to do: the kernel drops a process's flocks with it."""


class FileLock:
    """An exclusive, non-blocking `flock` on `path`, polled while another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        return await asyncio.to_thread(self._try_acquire)

    async def acquire(self) -> None:
        # Another process holds it: there is no event to wait on, so poll.
        while not self._try_acquire():  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)

    async def release(self) -> None:
        self._release()

    async def is_free(self) -> bool:
        if self._try_acquire():
            self._release()
            return True
        return False

    async def holder_url(self) -> str | None:
        return None  # the holder, if any, is a process on this host

    def _try_acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
            # The holder before us may have unlinked the file after we opened it: a lock on
            # an unlinked inode excludes nobody, so start again on the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)

    def _release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding it, so no one can lock the old inode after us.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fd, self._fd = self._fd, None
        os.close(fd)
