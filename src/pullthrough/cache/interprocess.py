"""Coordination between worker processes that share one data directory.

Workers agree on who fetches something from upstream with `flock` on a file in the spool
directory: whoever holds the lock does the work, the others wait for its result. A crashed
worker's locks are released by the kernel, so nothing waits for a dead process.

A blob fill also publishes a small record beside its spool file, so that workers following it
know where the bytes are, how many there will be, and how the fill ended:

    <data_dir>/tmp/
    ├── sha256-<hex>.lock          held by the worker filling the blob
    ├── sha256-<hex>.fill          {"spool", "size", "repository", "state", "error"}
    └── <hex16>-<random>.part      the bytes so far
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pullthrough import errors
from pullthrough.errors import RegistryError, UpstreamUnavailable

POLL_SECONDS = 0.01


class FileLock:
    """An exclusive, non-blocking `flock` on `path`, polled asynchronously."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
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

    async def acquire(self) -> None:
        # Another process holds it: there is no event to wait on, so poll.
        while not self.try_acquire():  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding it, so no one can lock the old inode after us.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fd, self._fd = self._fd, None
        os.close(fd)

    def is_free(self) -> bool:
        """Whether nobody holds the lock now (taking and dropping it if so)."""
        if self.try_acquire():
            self.release()
            return True
        return False


def lock_name(*parts: str) -> str:
    """A file name for a lock on an arbitrary key (repository, tag, …)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32] + ".lock"


@contextlib.asynccontextmanager
async def exclusive(directory: Path, *parts: str) -> AsyncIterator[None]:
    lock = FileLock(directory / lock_name(*parts))
    await lock.acquire()
    try:
        yield
    finally:
        lock.release()


FillStateName = Literal["running", "verified", "committed", "failed"]


@dataclass(frozen=True, slots=True)
class FillRecord:
    spool: str
    size: int | None
    repository: str
    state: FillStateName = "running"
    error_type: str | None = None
    error_message: str | None = None
    error_headers: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0

    @staticmethod
    def error_type_of(error: RegistryError) -> str:
        """The public class in `pullthrough.errors` nearest to `error`'s own (which may be a
        private subclass, like the upstream client's 429)."""
        return next(c.__name__ for c in type(error).__mro__ if c.__module__ == errors.__name__)

    def error(self) -> RegistryError:
        error_class = getattr(errors, self.error_type or "", None)
        if not (isinstance(error_class, type) and issubclass(error_class, RegistryError)):
            error_class = UpstreamUnavailable
        return error_class(
            self.error_message or "the fill in another worker failed", headers=self.error_headers
        )

    def write(self, path: Path) -> None:
        temporary = path.with_suffix(".fill-new")
        temporary.write_text(json.dumps({**asdict(self), "updated_at": time.time()}))
        os.replace(temporary, path)

    @classmethod
    def read(cls, path: Path) -> FillRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def fill_paths(spool_dir: Path, algorithm: str, hex_digest: str) -> tuple[Path, Path]:
    """(lock file, record file) of the fill of one blob."""
    base = spool_dir / f"{algorithm}-{hex_digest}"
    return base.with_suffix(".lock"), base.with_suffix(".fill")
