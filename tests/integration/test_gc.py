"""Garbage collection while clients pull: 20 clients pull cold and warm images through a
two-worker server for 30 s while images are expired and garbage is collected in a loop with a
short grace period. Every pull succeeds and verifies; afterwards every blob a remaining manifest
references is on disk, and nothing unreferenced older than the grace period is."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pullthrough.lifecycle.gc import GcReport, collect_garbage
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.oci import mediatypes
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout
from pullthrough.storage.locks import FileLocks
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

CLIENTS = 20
PULL_SECONDS = 30.0
GRACE = 1.0  # seconds: short, so blobs become collectable while the clients still pull
GC_PAUSE = 0.3
EXPIRE_EVERY = 2.0
ACCEPT = ", ".join(sorted(mediatypes.INDEX_TYPES | mediatypes.IMAGE_TYPES))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Tally:
    pulls: int = 0
    failures: list[str] = field(default_factory=list)
    gc: list[GcReport] = field(default_factory=list)
    expired: int = 0


async def pull_image(client: httpx.AsyncClient, cache: Cache, image: PushedImage) -> None:
    """The whole image as a client pulls it: the tag, each platform manifest, every blob; each
    verified against its digest. Raises AssertionError on anything wrong."""
    base = f"{cache.server.url}/v2/up/{image.repo}"
    response = await client.get(f"{base}/manifests/{image.tag}", headers={"Accept": ACCEPT})
    assert response.status_code == 200, f"{image.reference}: {response.status_code}"
    assert sha256(response.content) == image.digest, f"{image.reference}: wrong manifest"
    manifests = [image]
    for child in image.children:
        got = await client.get(f"{base}/manifests/{child.digest}", headers={"Accept": ACCEPT})
        assert got.status_code == 200, f"{child.by_digest}: {got.status_code}"
        assert sha256(got.content) == child.digest, f"{child.by_digest}: wrong manifest"
        manifests.append(child)
    for manifest in manifests:
        for blob in manifest.blobs:
            hasher = hashlib.sha256()
            body = b""
            async with client.stream("GET", f"{base}/blobs/{blob.digest}") as answer:
                assert answer.status_code == 200, f"{blob.digest}: {answer.status_code}"
                async for chunk in answer.aiter_raw():
                    hasher.update(chunk)
                    body += chunk
            assert "sha256:" + hasher.hexdigest() == blob.digest, (
                f"{blob.digest}: wrong bytes: {len(body)} of {blob.size}, {body[:80]!r}"
            )


async def client_loop(
    cache: Cache, images: list[PushedImage], deadline: float, seed: int, tally: Tally
) -> None:
    """Pull random images until the deadline; a pull under way when it passes is finished."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < deadline:
            image = rng.choice(images)
            try:
                await pull_image(client, cache, image)
            except AssertionError as exc:
                tally.failures.append(f"{image.reference}: {exc}")
            except httpx.RequestError as exc:
                tally.failures.append(
                    f"{image.reference}: {exc.request.url}: {exc!r} at {time.strftime('%X')}"
                )
            tally.pulls += 1


async def collector_loop(
    layout: DataLayout, victims: list[str], stop: threading.Event, tally: Tally
) -> None:
    """Expire an image of `victims` (repositories) every few seconds, so there is garbage and
    pulls go cold again, and collect garbage in a loop."""
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    space = SpaceStore(metadata.engine)
    driver = FilesystemDriver(layout.blob_root)
    rng = random.Random(7)
    next_expiry = time.monotonic() + EXPIRE_EVERY
    try:
        while not stop.is_set():
            if time.monotonic() >= next_expiry:
                next_expiry += EXPIRE_EVERY
                held = [image for name in victims for image in await space.images(name)]
                if held:
                    victim = rng.choice(held)
                    expired = await space.expire(victim.repository, [victim.digest])
                    tally.expired += expired.images
            report = await collect_garbage(space, driver, GRACE, locks=FileLocks(layout.temp_dir))
            tally.gc.append(report)
            await asyncio.sleep(GC_PAUSE)
    finally:
        await metadata.close()


class Collector:
    """The collector loop on its own thread and event loop, as a separate job would run:
    the clients' hashing must not starve it."""

    def __init__(self, layout: DataLayout, victims: list[str], tally: Tally) -> None:
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(layout, victims, tally), daemon=True
        )

    def _run(self, layout: DataLayout, victims: list[str], tally: Tally) -> None:
        try:
            asyncio.run(collector_loop(layout, victims, self._stop, tally))
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the collector did not stop"
        if self._error is not None:
            raise self._error


def referenced_by_remaining_manifests(metadata_file: Path) -> set[str]:
    """Blob digests the manifests left in the database reference, read from their bytes (not
    from the references the code under test keeps)."""
    query = (
        "SELECT content FROM manifests WHERE digest IN (SELECT digest FROM repository_manifests)"
    )
    with contextlib.closing(sqlite3.connect(metadata_file)) as db:
        rows = db.execute(query).fetchall()
    digests: set[str] = set()
    for (content,) in rows:
        document = json.loads(content)
        for descriptor in [document.get("config"), *document.get("layers", [])]:
            if descriptor:
                digests.add(descriptor["digest"])
    return digests


def files_on_disk(layout: DataLayout) -> dict[str, Path]:
    return {
        f"sha256:{path.name}": path
        for path in (layout.blob_root / "blobs" / "sha256").glob("*/*")
        if path.is_file()
    }


async def test_gc_in_a_loop_while_twenty_clients_pull_loses_nothing_and_leaves_no_garbage(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"workers": 2, "lifecycle": {"interval": 0}},
    )
    images = [
        fixture_images.busybox,
        fixture_images.oci_app,
        fixture_images.multi,
        fixture_images.multi_docker,
        fixture_images.many_layers,
    ]
    every_blob = set().union(*(image.blob_digests() for image in images))
    layout = DataLayout(cache.server.data_dir)
    # Three repositories lose images again and again; two keep theirs, so the end state
    # surely has manifests to check.
    victims = [f"up/{image.repo}" for image in images[:3]]
    tally = Tally()
    with Collector(layout, victims, tally) as collector:
        deadline = time.monotonic() + PULL_SECONDS
        await asyncio.wait_for(
            asyncio.gather(
                *(client_loop(cache, images, deadline, seed, tally) for seed in range(CLIENTS))
            ),
            timeout=PULL_SECONDS + 60,
        )
        collector.stop()
    print(
        f"{tally.pulls} pulls, {tally.expired} images expired, {len(tally.gc)} collections: "
        f"{sum(r.blobs_deleted for r in tally.gc)} blobs deleted, "
        f"{sum(r.refilled for r in tally.gc)} fetched again while settling, "
        f"{cache.upstream_blob_gets()} upstream blob GETs"
    )
    assert tally.failures == [], (
        f"{len(tally.failures)} of {tally.pulls} pulls failed: " + "\n".join(tally.failures)
    )

    # There really was garbage, and images really went cold again.
    assert tally.expired >= len(victims)
    # Collections took blobs out of the store (most are fetched again at once: the clients
    # keep pulling those images).
    assert sum(report.blobs_deleted + report.refilled for report in tally.gc) > 0
    assert cache.upstream_blob_gets() > len(every_blob)

    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        # Every blob a remaining manifest references is there, whole.
        referenced = referenced_by_remaining_manifests(layout.metadata_file)
        stored = files_on_disk(layout)
        assert referenced >= images[3].blob_digests() | images[4].blob_digests()
        missing = referenced - stored.keys()
        assert not missing, f"referenced blobs missing from disk: {sorted(missing)}"
        for digest in referenced:
            assert sha256(stored[digest].read_bytes()) == digest
        assert referenced <= dict(await metadata.blobs.stored()).keys()

        # A grace period later, one more collection leaves nothing unreferenced.
        space = SpaceStore(metadata.engine)
        driver = FilesystemDriver(layout.blob_root)
        later = time.time() + GRACE + 0.2
        await collect_garbage(space, driver, GRACE, later, locks=FileLocks(layout.temp_dir))
        leftover = files_on_disk(layout).keys() - referenced
        assert not leftover, f"unreferenced blobs left on disk: {sorted(leftover)}"
        assert set(dict(await metadata.blobs.stored())) == referenced
    finally:
        await metadata.close()
