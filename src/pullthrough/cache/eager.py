"""Eager fill: an image's config and layers start filling as soon as its manifest is fetched.

Clients read a manifest, then fetch its blobs a few at a time (docker, containerd and podman
three at once): the later layers of a cold image wait for the earlier ones. When a client's
pull fetches a cold image manifest from upstream — a single-platform image, or the one platform
of an index the client resolved, which it asks for by digest — this worker starts that image's
blobs filling at once, a few at a time per upstream, so the client finds them stored or in
flight. An index itself never starts anything: its other platforms are not fetched.

Every fill goes through `BlobCache.open`, the same single-flight a client's GET goes through:
a blob is never fetched upstream twice, whichever of the eager fill and the client comes
first, in whichever worker or replica. What the caller may not import is never filled (the
caller's `ImportCheck` is asked, as for its own GET); an image larger than the size cap could
hold is left to the client. A failed eager fill is logged and forgotten: the client's own GET
starts or joins a fill as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from pullthrough.access.import_check import ImportCheck
from pullthrough.cache.blobs import BlobCache
from pullthrough.cache.fill.lead import LeadFill
from pullthrough.cache.routing import Route
from pullthrough.errors import RegistryError
from pullthrough.metadata.manifests import StoredManifest
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.oci.manifest import Descriptor, parse_manifest
from pullthrough.storage.locks import Locks
from pullthrough.telemetry import metrics

log = logging.getLogger(__name__)

# Blobs filled at once per upstream by eager fills of this worker: a client's own GETs come on
# top, and fills another worker or replica leads are not counted.
FILLS_PER_UPSTREAM = 3
# Blobs waiting or filling for eager fills of this worker; beyond this, an image's remaining
# blobs are left to the clients that ask for them.
MAX_PENDING_BLOBS = 256


@dataclass(frozen=True, slots=True)
class EagerLimits:
    """How far eager fill goes: fills at once per upstream, blobs queued at most, and the size
    cap (`lifecycle.max_size`, None: no cap) an image must fit to be filled eagerly."""

    per_upstream: int = FILLS_PER_UPSTREAM
    max_pending: int = MAX_PENDING_BLOBS
    max_size: int | None = None


class EagerFill:
    """A worker's eager fills: `start` one for an image manifest just fetched for a client."""

    def __init__(
        self,
        blobs: BlobCache,
        metadata: MetadataStore,
        locks: Locks,
        limits: EagerLimits | None = None,
    ) -> None:
        self._blobs = blobs
        self._metadata = metadata
        self._locks = locks
        self._limits = limits or EagerLimits()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._images: set[tuple[str, str]] = set()  # (repository, manifest digest) under way
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._stopped = False

    @property
    def pending(self) -> int:
        """Blobs waiting for a slot or filling for eager fills now."""
        return self._pending

    def start(self, route: Route, manifest: StoredManifest, may_import: ImportCheck) -> None:
        """Start filling the config and layers of `manifest`, fetched from upstream for a
        client of `route`, in the background; nothing for an index, a rule with `eager_fill`
        off, or after `stop`. Never raises: the client's answer does not depend on it."""
        if self._stopped or not route.rule.eager_fill:
            return
        key = (route.repository, manifest.digest)
        if key in self._images:
            return
        try:
            parsed = parse_manifest(manifest.content, manifest.media_type)
        except RegistryError as exc:
            log.debug("no eager fill of %s@%s: %s", route.repository, manifest.digest, exc)
            return
        if parsed.is_index or not parsed.blobs:
            return
        self._images.add(key)
        self._spawn(self._fill_image(route, manifest.digest, parsed.blobs, may_import), key)

    def stop(self) -> None:
        """Start no more eager fills (the worker drains): fills already running go on, like a
        client's, and blobs still waiting for a slot are left."""
        self._stopped = True

    async def close(self) -> None:
        """Stop, and cancel what eager fills wait for; the fills themselves belong to
        `BlobCache`, which stops them when it closes."""
        self.stop()
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, work: Coroutine[Any, Any, None], image: tuple[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"eager fill {image[1]}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._images.discard(image)

        task.add_done_callback(done)

    async def _fill_image(
        self,
        route: Route,
        manifest_digest: str,
        blobs: tuple[Descriptor, ...],
        may_import: ImportCheck,
    ) -> None:
        image = f"{route.repository}@{manifest_digest}"
        try:
            may_import(f"blobs of {image}")
        except RegistryError as exc:
            log.debug("no eager fill of %s: %s", image, exc.message)
            return
        if not self._fits_size_cap(image, blobs):
            return
        # Config first, then the layers in order: the order clients ask for them.
        digests = list(dict.fromkeys(blob.digest for blob in blobs))
        fills = []
        for index, digest in enumerate(digests):
            if self._stopped:
                return
            if self._pending >= self._limits.max_pending:
                log.info(
                    "eager fill of %s: %d blob(s) already queued; leaving %d of its blobs to "
                    "the clients",
                    image,
                    self._pending,
                    len(digests) - index,
                )
                break
            self._pending += 1
            fills.append(self._fill_blob(route, digest, may_import))
        await asyncio.gather(*fills)

    def _fits_size_cap(self, image: str, blobs: tuple[Descriptor, ...]) -> bool:
        """An image whose blobs add up to more than the size cap could never be held whole:
        filling it eagerly would only push other images out for blobs nobody may ask for."""
        cap = self._limits.max_size
        if cap is None:
            return True
        sizes = [blob.size for blob in blobs]
        if any(size < 0 for size in sizes):  # schema 1 manifests do not say
            log.info("no eager fill of %s: its blob sizes are unknown and a size cap is set", image)
            return False
        if sum(sizes) > cap:
            log.info(
                "no eager fill of %s: its blobs (%d bytes) exceed lifecycle.max_size (%d bytes)",
                image,
                sum(sizes),
                cap,
            )
            return False
        return True

    async def _fill_blob(self, route: Route, digest: str, may_import: ImportCheck) -> None:
        try:
            async with self._slot(route):
                if self._stopped or await self._needless(route, digest):
                    return
                answer = await self._blobs.open(route, Digest.parse(digest), may_import)
                led = isinstance(answer.source, LeadFill)
                _count("downloaded" if led else "joined")
                if isinstance(answer.source, LeadFill):
                    # Hold the slot while this worker downloads: that is what bounds it.
                    await answer.source.wait_done()
                # Stored, or a fill another worker or replica leads: nothing more to do here.
        except RegistryError as exc:
            _count("failed")
            log.info("eager fill of %s@%s failed: %s", route.repository, digest, exc.message)
        except Exception:
            _count("failed")
            log.exception("eager fill of %s@%s failed", route.repository, digest)
        finally:
            self._pending -= 1

    def _slot(self, route: Route) -> asyncio.Semaphore:
        upstream = route.rule.upstream
        slot = self._slots.get(upstream)
        if slot is None:
            slot = self._slots[upstream] = asyncio.Semaphore(self._limits.per_upstream)
        return slot

    async def _needless(self, route: Route, digest: str) -> bool:
        """Whether the blob is stored, or some fill of it runs already: then a client's GET
        finds it without us (a stored blob not yet served for this repository included; the
        client's GET confirms it upstream)."""
        size, _ = await self._metadata.blobs.for_repository(route.repository, digest)
        if size is not None:
            return True
        if any(str(fill.digest) == digest for fill in self._blobs.fills):
            return True
        algorithm, hex_digest = digest.split(":", 1)
        # Held by a replica (leases on PostgreSQL): it streams the fill to whoever asks.
        # Locks of one host name no holder; `open` follows such a fill cheaply.
        return await self._locks.blob_fill(algorithm, hex_digest).holder_url() is not None


def _count(result: str) -> None:
    counted = metrics.current()
    if counted is not None:
        counted.eager_fills.labels(result).inc()
