"""Lease locks over one metadata database, as replicas share it: lock sets with different
holders exclude each other, a dead holder's lease lapses, only the holder releases, and the
holder's advertise URL is readable. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from pullthrough.config import LifecycleConfig, Settings
from pullthrough.lifecycle.gc import collect_garbage
from pullthrough.lifecycle.keeper import LEASE, SpaceKeeper
from pullthrough.metadata import schema
from pullthrough.metadata.lease_locks import LeaseLocks
from pullthrough.metadata.opening import open_locks
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

A_URL = "http://replica-a:5000"
B_URL = "http://replica-b:5000"
HEX = "ab" * 32
# Long enough that no lease lapses during a test unless its holder stopped renewing.
TTL = 30.0

# A holder in a process of its own: takes the lock, says so, then only renews until killed.
HOLDER = """
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from pullthrough.metadata.lease_locks import LeaseLocks
from pullthrough.metadata.store import MetadataStore

async def main(url, search_path):
    if search_path:
        args = {"server_settings": {"search_path": search_path}}
        engine = create_async_engine(url, connect_args=args)
    else:
        engine = (await MetadataStore.open(url)).engine
    locks = LeaseLocks(engine, "http://doomed:5000", ttl=1.0)
    lock = locks.blob_fill("sha256", sys.argv[3])
    assert await lock.try_acquire()
    print("held", flush=True)
    await asyncio.sleep(300)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
async def replica_a(metadata: MetadataStore) -> LeaseLocks:
    return LeaseLocks(metadata.engine, A_URL, ttl=TTL)


@pytest.fixture
async def replica_b(metadata: MetadataStore) -> LeaseLocks:
    return LeaseLocks(metadata.engine, B_URL, ttl=TTL)


async def test_two_replicas_exclude_each_other_and_name_the_holder(
    replica_a: LeaseLocks, replica_b: LeaseLocks
) -> None:
    fill_a, fill_b = replica_a.blob_fill("sha256", HEX), replica_b.blob_fill("sha256", HEX)
    assert await fill_b.is_free()
    assert await fill_b.holder_url() is None

    assert await fill_a.try_acquire()
    assert not await fill_b.try_acquire()
    assert not await fill_b.is_free()
    assert await fill_b.holder_url() == A_URL

    await fill_a.release()
    # A fresh lock object: `is_free` may repeat a "held" answer for one poll interval.
    assert await replica_b.blob_fill("sha256", HEX).is_free()
    assert await fill_b.try_acquire()
    assert await fill_a.holder_url() == B_URL
    await fill_b.release()


async def test_named_locks_exclude_each_other_and_differ_by_key(
    replica_a: LeaseLocks, replica_b: LeaseLocks
) -> None:
    tag_a = replica_a.named("tag", "docker-hub/library/nginx", "1.27")
    assert await tag_a.try_acquire()
    assert not await replica_b.named("tag", "docker-hub/library/nginx", "1.27").try_acquire()
    other = replica_b.named("tag", "docker-hub/library/nginx", "1.28")
    assert await other.try_acquire()
    await other.release()
    await tag_a.release()


async def test_two_locks_of_one_replica_on_one_key_exclude_each_other(
    replica_a: LeaseLocks,
) -> None:
    """Two requests of one process: the lock object is the holder, not the process."""
    first, second = replica_a.blob_fill("sha256", HEX), replica_a.blob_fill("sha256", HEX)
    assert await first.try_acquire()
    assert not await second.try_acquire()
    await first.release()
    assert await second.try_acquire()
    await second.release()


async def test_a_waiter_gets_the_lock_once_the_holder_releases_it(
    replica_a: LeaseLocks, replica_b: LeaseLocks
) -> None:
    fill_a = replica_a.blob_fill("sha256", HEX)
    await fill_a.acquire()
    waiter = asyncio.create_task(replica_b.blob_fill("sha256", HEX).acquire())
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await fill_a.release()
    await asyncio.wait_for(waiter, timeout=10)
    assert await fill_a.holder_url() == B_URL
    await replica_b.close()
    assert await fill_a.is_free()


async def test_a_held_lease_is_renewed_past_its_ttl(metadata: MetadataStore) -> None:
    holder = LeaseLocks(metadata.engine, A_URL, ttl=0.8)
    lock = holder.blob_fill("sha256", HEX)
    assert await lock.try_acquire()
    await asyncio.sleep(2.0)  # more than twice the ttl: only renewals keep it
    assert not await LeaseLocks(metadata.engine, B_URL).blob_fill("sha256", HEX).try_acquire()
    await lock.release()


async def test_release_by_a_holder_whose_lease_lapsed_leaves_the_new_holder_alone(
    metadata: MetadataStore, replica_b: LeaseLocks
) -> None:
    stalled = LeaseLocks(metadata.engine, A_URL, ttl=0.5)
    old = stalled.blob_fill("sha256", HEX)
    assert await old.try_acquire()
    heartbeat = old._heartbeat
    assert heartbeat is not None
    heartbeat.cancel()  # a holder that stopped renewing (a stalled process)
    new = replica_b.blob_fill("sha256", HEX)
    await asyncio.wait_for(new.acquire(), timeout=10)
    assert await new.holder_url() == B_URL

    await old.release()  # no longer the holder: changes nothing
    await replica_b.blob_fill("sha256", HEX).release()  # never held: changes nothing
    assert await new.holder_url() == B_URL
    assert not await replica_b.blob_fill("sha256", HEX).try_acquire()
    await new.release()


async def _search_path(metadata: MetadataStore) -> str:
    if metadata.engine.dialect.name != "postgresql":
        return ""
    async with metadata.engine.connect() as conn:
        return str((await conn.exec_driver_sql("SHOW search_path")).scalar_one())


async def test_a_killed_holder_loses_its_lease_after_the_ttl(
    metadata: MetadataStore, replica_b: LeaseLocks
) -> None:
    url = metadata.engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, await _search_path(metadata), HEX],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), timeout=30)
        assert line.strip() == "held"
        fill = replica_b.blob_fill("sha256", HEX)
        assert not await fill.try_acquire()
        assert await fill.holder_url() == "http://doomed:5000"

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # The lease lapses one ttl (1 s) after the dead holder's last renewal.
        await asyncio.wait_for(fill.acquire(), timeout=10)
        assert await fill.holder_url() == B_URL
        await fill.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_gc_leaves_a_blob_whose_fill_another_replica_holds(
    metadata: MetadataStore,
    space: SpaceStore,
    build: Builder,
    replica_a: LeaseLocks,
    replica_b: LeaseLocks,
    tmp_path: Path,
) -> None:
    layout = DataLayout(tmp_path / "data")
    layout.create()
    driver = FilesystemDriver(layout.blob_root)
    now, grace = time.time(), 600.0
    digest = await build.blob("up/team/app", "refetching", 50)
    async with metadata.engine.begin() as conn:
        await conn.execute(
            update(schema.blobs)
            .where(schema.blobs.c.digest == digest)
            .values(created_at=now - 2 * grace)
        )
    parsed = Digest.parse(digest_of("refetching"))
    path = layout.blob_root / blob_key(parsed.algorithm, parsed.hex)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 50)
    os.utime(path, (now - 2 * grace, now - 2 * grace))

    fill = replica_b.blob_fill(parsed.algorithm, parsed.hex)
    assert await fill.try_acquire()
    try:
        report = await collect_garbage(space, driver, grace, now, locks=replica_a, settle=0)
    finally:
        await fill.release()
    assert (report.blobs_deleted, report.refilled) == (0, 1)
    assert path.exists()


async def test_postgresql_gets_lease_locks_and_sqlite_file_locks(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, advertise_url="http://replica-a:5000/")
    locks = open_locks(settings, metadata)
    if metadata.engine.dialect.name == "postgresql":
        assert isinstance(locks, LeaseLocks)
        assert locks.holder_url == A_URL
    else:
        assert isinstance(locks, FileLocks)
    await locks.close()


async def test_a_lifecycle_run_waits_for_another_replicas_run(
    metadata: MetadataStore, replica_a: LeaseLocks, replica_b: LeaseLocks, tmp_path: Path
) -> None:
    driver = FilesystemDriver(tmp_path / "blobs")
    keeper = SpaceKeeper(metadata.engine, driver, LifecycleConfig(), replica_a)
    running_elsewhere = replica_b.named(LEASE)
    assert await running_elsewhere.try_acquire()
    run = asyncio.create_task(keeper.run())
    await asyncio.sleep(0.3)
    assert not run.done()
    await running_elsewhere.release()
    report = await asyncio.wait_for(run, timeout=10)
    assert report.gc is not None
    assert await running_elsewhere.is_free()  # the run released it
