"""The fill as a process that follows another one sees it: the other worker process downloads.

The other worker holds the blob's fill lock, writes the spool file, and publishes a `FillRecord`
(see `state.py`). A follower reads the same spool file as it grows and learns the end from the
record, the committed blob, or — if the other worker died — the lock coming free. When storage
keeps no local files (object storage), the committed blob is asked of the driver, and only once
the lock is free: the record says how the fill ended until then.

Any number of readers may read one follower: they share its look at the record and the file
(one every POLL_SECONDS, however many wait), so a blob many clients pull at once costs this
process no more than one client does.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pullthrough.cache.fill.reading import Fill
from pullthrough.cache.fill.state import POLL_SECONDS, FillRecord, FillState
from pullthrough.errors import RegistryError, UpstreamTimeout, UpstreamUnavailable
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import ExclusiveLock

# How often a follower checks that the worker it follows is still alive.
LIVENESS_SECONDS = 0.5


class FollowFill(Fill):
    def __init__(
        self,
        *,
        digest: Digest,
        lock: ExclusiveLock,
        record_path: Path,
        final_path: Path | None,
        driver: BlobDriver,
        deadline: float,
    ) -> None:
        self.digest = digest
        self.repository = ""
        self.size = None
        self.state = FillState.RUNNING
        self.error = None
        self.spool_path = record_path  # replaced once the record names the spool
        self.committed_path = final_path
        self.driver = driver
        self.storage_key = blob_key(digest.algorithm, digest.hex)
        # The lock the leading worker holds: free again once it is gone.
        self._lock = lock
        self._record_path = record_path
        self._deadline = time.monotonic() + deadline
        self._last_liveness_check = time.monotonic()
        # The look every waiting reader waits for; a new one starts once it is done.
        self._look: asyncio.Task[None] | None = None

    async def attach(self) -> bool:
        """Wait for the other worker's record; False when there is no fill to follow."""
        attached_at = time.time()
        while True:
            record = FillRecord.read(self._record_path)
            # A failure recorded before we came is an earlier fill's: wait for the new one.
            if record is not None and (
                not record.state.unstored or record.updated_at >= attached_at
            ):
                self._apply(record)
                return True
            if self._committed_locally():
                self.state = FillState.COMMITTED
                # Read the committed file itself: a new fill's record may appear at the
                # record path (after garbage collection, say), and it is not the blob.
                self.spool_path = self.committed_path  # type: ignore[assignment]
                return True
            if await self._leader_gone():
                if self.committed_path is None and await self._committed():
                    self.state = FillState.COMMITTED  # read from the driver (`Fill.read`)
                    return True
                return False
            await asyncio.sleep(POLL_SECONDS)

    def _apply(self, record: FillRecord) -> None:
        self.repository = record.repository
        self.size = record.size
        self.spool_path = self._record_path.parent / record.spool
        if record.state.unstored:
            self.error = record.error()
        if record.state is not FillState.RUNNING:
            self.state = record.state

    def _committed_locally(self) -> bool:
        """The committed file is there (never true when storage keeps no local files)."""
        if self.committed_path is None:
            return False
        try:
            size = os.stat(self.committed_path).st_size
        except FileNotFoundError:
            return False
        return self._stored_size(size)

    def _stored_size(self, size: int | None) -> bool:
        """Whether a stored object of `size` bytes is the blob; its size is the blob's size
        from then on (a follower that found the blob stored never read a record)."""
        if size is None or (self.size is not None and size != self.size):
            return False
        self.size = size
        return True

    async def _committed(self) -> bool:
        """The blob is stored: the local file, or else the object, asked of the driver."""
        if self.committed_path is not None:
            return self._committed_locally()
        return self._stored_size(await self.driver.size(self.storage_key))

    async def _spool_gone(self) -> None:
        record = FillRecord.read(self._record_path)
        if record is not None and record.spool == self.spool_path.name:
            self._apply(record)
        if self.state in (FillState.RUNNING, FillState.VERIFIED) and await self._committed():
            self.state = FillState.COMMITTED

    async def _leader_gone(self) -> bool:
        return await self._lock.is_free()

    async def wait_started(self) -> None:
        if self.state is FillState.FAILED:
            assert self.error is not None
            raise self.error

    def _available(self, fd: int) -> int:
        return os.fstat(fd).st_size

    @property
    def following(self) -> bool:
        """Not ended as far as this follower saw (its readers may have stopped looking)."""
        return self.state in (FillState.RUNNING, FillState.VERIFIED)

    def still_running(self) -> bool:
        """The fill is running now, by its record: worth joining for a new reader. A follower
        whose readers all finished stops looking, so its own state may be stale: the blob may
        have been committed and even collected since."""
        record = FillRecord.read(self._record_path)
        return (
            self.state is FillState.RUNNING
            and record is not None
            and record.spool == self.spool_path.name
            and record.state is FillState.RUNNING
        )

    async def _wait_change(self) -> None:
        if self._look is None or self._look.done():
            self._look = asyncio.get_running_loop().create_task(self._look_again())
        await asyncio.shield(self._look)

    async def _look_again(self) -> None:
        """Wait a poll interval, then read where the fill stands."""
        await asyncio.sleep(POLL_SECONDS)
        record = FillRecord.read(self._record_path)
        if record is not None and record.spool == self.spool_path.name:
            self._apply(record)
        if self.state not in (FillState.RUNNING, FillState.VERIFIED):
            return
        if self._committed_locally():
            self.state = FillState.COMMITTED
            return
        now = time.monotonic()
        if now > self._deadline:
            self._fail(UpstreamTimeout(f"the fill of {self.digest} in another worker timed out"))
        elif now - self._last_liveness_check > LIVENESS_SECONDS:
            self._last_liveness_check = now
            if not await self._leader_gone():
                return
            if await self._committed():  # its record went with it
                self.state = FillState.COMMITTED
            else:
                record = FillRecord.read(self._record_path)
                if record is not None and record.state is not FillState.RUNNING:
                    self._apply(record)
                else:
                    self._fail(
                        UpstreamUnavailable(
                            f"the worker filling {self.digest} stopped before finishing; retry"
                        )
                    )

    def _fail(self, error: RegistryError) -> None:
        self.state = self.state.failing()
        self.error = error
