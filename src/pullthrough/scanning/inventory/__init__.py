"""What an image holds: its layers read as streams, in order, each once (kept by layer digest in
the metadata database), and merged with whiteouts and opaque directories honoured.

`LayerInventories.image(repository, layers)` is the one entry point: the scan jobs call it with
the image manifest's layers and a `LayerSource` that reads blobs through the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pullthrough.metadata.layer_inventories import LayerInventoryStore
from pullthrough.scanning.inventory.layers import read_layer
from pullthrough.scanning.inventory.merge import merge
from pullthrough.scanning.inventory.records import FORMAT, LayerContents
from pullthrough.scanning.model import Inventory, LayerSource

__all__ = ["Layer", "LayerDescriptor", "LayerInventories"]


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    media_type: str  # informational: the compression is told by the blob's first bytes


class LayerDescriptor(Protocol):
    """Anything naming a layer as a manifest does (`Layer`, or the scan jobs' own)."""

    @property
    def digest(self) -> str: ...

    @property
    def media_type(self) -> str: ...


class LayerInventories:
    """Reads layers not yet in the store from the source (one at a time, each once however many
    images of this object's scans share it) and merges an image's layers."""

    def __init__(
        self, source: LayerSource, store: LayerInventoryStore, *, spool_dir: Path | None = None
    ) -> None:
        self._source = source
        self._store = store
        self._spool_dir = spool_dir
        self._reading: dict[str, _Reading] = {}
        self.layers_read = 0  # layers read from the source (not found in the store)

    async def image(self, repository: str, layers: Sequence[LayerDescriptor]) -> Inventory:
        contents = []
        for layer in layers:
            contents.append((layer.digest, await self.layer(repository, layer)))
        return merge(contents)

    async def layer(self, repository: str, layer: LayerDescriptor) -> LayerContents:
        """One layer's contents: from the store, else read once. Concurrent callers share one
        read; when the last of them gives up (is cancelled), the read stops."""
        reading = self._reading.get(layer.digest)
        if reading is None:
            reading = _Reading(asyncio.ensure_future(self._load(repository, layer)))
            self._reading[layer.digest] = reading
        reading.waiters += 1
        try:
            return await asyncio.shield(reading.task)
        finally:
            reading.waiters -= 1
            if reading.waiters == 0:
                if self._reading.get(layer.digest) is reading:
                    del self._reading[layer.digest]
                reading.task.cancel()
                if reading.task.done() and not reading.task.cancelled():
                    reading.task.exception()  # retrieved: its waiters have raised it

    async def _load(self, repository: str, layer: LayerDescriptor) -> LayerContents:
        document = await self._store.get(layer.digest, FORMAT)
        if document is not None:
            return LayerContents.from_json(document)
        contents = await read_layer(
            self._source.layer(repository, layer.digest), spool_dir=self._spool_dir
        )
        self.layers_read += 1
        await self._store.put(layer.digest, FORMAT, contents.to_json())
        return contents


@dataclass(slots=True)
class _Reading:
    task: asyncio.Task[LayerContents]
    waiters: int = 0
