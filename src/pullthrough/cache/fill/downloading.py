"""A fill whose bytes this process receives itself, from upstream (`lead.py`) or from the
replica that leads it (`peer.py`): received bytes go through a SpoolWriter into the spool file,
every change wakes the readers, and the memory a burst of downloads used is given back when the
last one ends (`heap.py`)."""

from __future__ import annotations

import asyncio
import hashlib
from abc import abstractmethod

from pullthrough.cache.fill.heap import Downloads
from pullthrough.cache.fill.reading import Fill
from pullthrough.cache.fill.spool import SpoolWriter


class DownloadingFill(Fill):
    written: int
    # Set and replaced on every change; subclasses create the first one.
    _changed: asyncio.Event

    @abstractmethod
    async def _receive(self, spool: SpoolWriter) -> None:
        """Hand every byte of the blob to `spool`, in order."""

    async def _download(self, fd: int, hasher: hashlib._Hash) -> None:
        """Receive the blob into the spool file `fd`, hashed by `hasher`; return when every
        byte is written and hashed."""
        spool = self._spool = SpoolWriter(fd, hasher, self._written)
        Downloads.started()
        try:
            await self._receive(spool)
            await spool.flush()
        finally:
            self._spool = None
            await spool.close()
            Downloads.ended()

    def _written(self, count: int) -> None:
        self.written += count
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _available(self, fd: int) -> int:
        return self.written
