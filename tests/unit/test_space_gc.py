"""Garbage collection and the size cap over a real metadata store and blob files, with a
controlled clock: what is collected, what is kept, and why."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from pullthrough.lifecycle.gc import collect_garbage
from pullthrough.lifecycle.sizecap import enforce_size_cap
from pullthrough.metadata import schema
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout, blob_key
from pullthrough.storage.locks import FileLocks
from tests.unit import space_support
from tests.unit.space_support import Builder, digest_of

metadata = space_support.metadata
space = space_support.space
build = space_support.build

REPO = "up/team/app"
OTHER = "up/team/other"
GRACE = 600.0


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    layout.create()
    return layout


@pytest.fixture
def driver(layout: DataLayout) -> FilesystemDriver:
    return FilesystemDriver(layout.blob_root)


def blob_path(layout: DataLayout, digest: str) -> Path:
    parsed = Digest.parse(digest)
    return layout.blob_root / blob_key(parsed.algorithm, parsed.hex)


def write_blob_file(layout: DataLayout, digest: str, size: int, mtime: float) -> Path:
    path = blob_path(layout, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


async def store_blob(
    build: Builder, layout: DataLayout, name: str, size: int, at: float, repo: str = REPO
) -> Path:
    """A committed blob: its file, then its row, both dated `at`."""
    digest = await build.blob(repo, name, size)
    async with build.metadata.engine.begin() as conn:
        await conn.execute(
            update(schema.blobs).where(schema.blobs.c.digest == digest).values(created_at=at)
        )
    return write_blob_file(layout, digest, size, at)


async def test_collects_old_unreferenced_blobs_and_orphan_files_and_nothing_else(
    space: SpaceStore,
    build: Builder,
    metadata: MetadataStore,
    layout: DataLayout,
    driver: FilesystemDriver,
) -> None:
    now = time.time()
    old, young = now - 2 * GRACE, now - GRACE / 2
    await build.image(REPO, "image", {"referenced": 10}, "v1")
    referenced = await store_blob(build, layout, "referenced", 10, old)
    garbage = await store_blob(build, layout, "garbage", 100, old)
    fresh = await store_blob(build, layout, "just-committed", 1000, young)
    orphan = write_blob_file(layout, digest_of("crashed-before-insert"), 7, old)
    young_orphan = write_blob_file(layout, digest_of("being-inserted"), 5, young)
    spool = layout.temp_dir / "0123456789abcdef-1.part"
    spool.write_bytes(b"partial")
    os.utime(spool, (old, old))
    stray = layout.blob_root / "blobs" / "sha256" / "not-a-digest"
    stray.write_bytes(b"?")
    os.utime(stray, (old, old))

    report = await collect_garbage(
        space, driver, GRACE, now, locks=FileLocks(layout.temp_dir), settle=0
    )

    assert (report.blobs_deleted, report.orphan_files_deleted) == (1, 1)
    assert report.bytes_freed == 100 + 7
    assert report.refilled == 0
    assert not garbage.exists()
    assert not orphan.exists()
    for kept in (referenced, fresh, young_orphan, spool, stray):
        assert kept.exists(), kept
    assert {d for d, _ in await metadata.blobs.stored()} == {
        digest_of("referenced"),
        digest_of("just-committed"),
    }
    assert await metadata.blobs.for_repository(REPO, digest_of("garbage")) == (None, False)
    # The fill lock files GC took are gone again.
    assert not list(layout.temp_dir.glob("*.lock"))

    again = await collect_garbage(
        space, driver, GRACE, now, locks=FileLocks(layout.temp_dir), settle=0
    )
    assert (again.blobs_deleted, again.orphan_files_deleted, again.bytes_freed) == (0, 0, 0)


async def test_a_blob_whose_fill_is_running_keeps_its_file(
    space: SpaceStore, build: Builder, layout: DataLayout, driver: FilesystemDriver
) -> None:
    now = time.time()
    path = await store_blob(build, layout, "refetching", 50, now - 2 * GRACE)
    digest = Digest.parse(digest_of("refetching"))
    fill_lock = FileLocks(layout.temp_dir).blob_fill(digest.algorithm, digest.hex)
    assert await fill_lock.try_acquire()
    try:
        report = await collect_garbage(
            space, driver, GRACE, now, locks=FileLocks(layout.temp_dir), settle=0
        )
    finally:
        await fill_lock.release()

    assert (report.blobs_deleted, report.refilled, report.bytes_freed) == (0, 1, 0)
    assert path.exists()  # the fill renames the same bytes over it and inserts the row


async def test_a_blob_fetched_again_while_gc_settles_keeps_its_file(
    space: SpaceStore,
    build: Builder,
    metadata: MetadataStore,
    layout: DataLayout,
    driver: FilesystemDriver,
) -> None:
    now = time.time()
    path = await store_blob(build, layout, "wanted-again", 50, now - 2 * GRACE)
    collection = asyncio.create_task(
        collect_garbage(space, driver, GRACE, now, locks=FileLocks(layout.temp_dir), settle=0.5)
    )
    await asyncio.sleep(0.2)
    # The row is gone: a client's fresh fill commits the blob again.
    assert await metadata.blobs.for_repository(REPO, digest_of("wanted-again")) == (None, False)
    await build.blob(REPO, "wanted-again", 50)
    report = await collection

    assert (report.blobs_deleted, report.refilled) == (0, 1)
    assert path.exists()
    assert await metadata.blobs.for_repository(REPO, digest_of("wanted-again")) == (50, True)


async def test_a_manifest_cached_after_collection_started_keeps_its_blob(
    space: SpaceStore, build: Builder, layout: DataLayout, driver: FilesystemDriver
) -> None:
    now = time.time()
    path = await store_blob(build, layout, "layer", 50, now - 2 * GRACE)
    candidates = await space.unreferenced_blobs(now - GRACE)
    assert [c.digest for c in candidates] == [digest_of("layer")]

    await build.image(REPO, "late", {"layer": 50}, "v1")  # cached between listing and delete

    assert not await space.forget_unreferenced_blob(digest_of("layer"), now - GRACE)
    report = await collect_garbage(
        space, driver, GRACE, now, locks=FileLocks(layout.temp_dir), settle=0
    )
    assert report.blobs_deleted == 0
    assert path.exists()


async def test_the_size_cap_evicts_least_recently_pulled_until_under_low_water(
    space: SpaceStore,
    build: Builder,
    metadata: MetadataStore,
    layout: DataLayout,
    driver: FilesystemDriver,
) -> None:
    now = time.time() + 10 * GRACE  # everything below was cached long enough ago
    base = {"base-layer": 400}
    old_a = await build.image(REPO, "old-a", {**base, "a": 100}, "a")  # pulled first
    shared = await build.image(OTHER, "old-b", {**base, "b": 100}, "b")  # pulled second
    recent = await build.image(REPO, "recent", {"c": 300}, "c")  # pulled last
    never = await build.image(OTHER, "never", {"d": 200}, "d")  # never pulled: cached_at
    for name, size in [("base-layer", 400), ("a", 100), ("b", 100), ("c", 300), ("d", 200)]:
        await store_blob(build, layout, name, size, now - 2 * GRACE)
    repo_id, other_id = await build.repo(REPO), await build.repo(OTHER)
    await space.record_pulls(
        {
            (repo_id, old_a): (now - 3000, 1),
            (other_id, shared): (now - 2000, 1),
            (repo_id, recent): (now - 10, 1),
        }
    )
    # Cached (never pulled) between b's and c's last pulls.
    rm = schema.repository_manifests
    async with metadata.engine.begin() as conn:
        await conn.execute(update(rm).where(rm.c.digest == never).values(created_at=now - 1000))
    total = 400 + 100 + 100 + 300 + 200

    report = await enforce_size_cap(
        space, driver, max_size=1000, low_water=0.4, grace=GRACE, now=now, settle=0
    )

    # Evicting old-a frees only its own 100 bytes (base-layer is shared with old-b); old-b
    # then frees 500, leaving 500 > 400; `never` (200) brings the total to 300 ≤ 400.
    assert [image.digest for image in report.evicted] == [old_a, shared, never]
    assert report.bytes_before == total
    assert report.bytes_after == 300 <= report.low_water_bytes
    assert report.gc is not None and report.gc.bytes_freed == total - 300
    assert [i.digest for i in await space.images(REPO)] == [recent]
    assert await space.images(OTHER) == []
    assert blob_path(layout, digest_of("c")).exists()
    assert not blob_path(layout, digest_of("base-layer")).exists()


async def test_under_the_cap_nothing_is_evicted_and_new_images_are_never_evicted(
    space: SpaceStore, build: Builder, layout: DataLayout, driver: FilesystemDriver
) -> None:
    now = time.time()
    await build.image(REPO, "new", {"big": 5000}, "v1")
    await store_blob(build, layout, "big", 5000, now - 2 * GRACE)

    under = await enforce_size_cap(space, driver, max_size=10_000, grace=GRACE, now=now, settle=0)
    over = await enforce_size_cap(space, driver, max_size=1000, grace=GRACE, now=now, settle=0)

    assert under.evicted == () and under.gc is None and under.bytes_after == 5000
    assert over.evicted == ()  # cached just now: a client is probably still pulling it
    assert over.bytes_after == 5000
