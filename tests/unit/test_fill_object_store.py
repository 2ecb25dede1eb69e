"""Blobs on storage that keeps no local files (object storage), with a fake driver at the
driver seam: the fill streams into an upload completed only after verification, a failed fill
aborts it, readers after the commit and followers in other processes read through the driver,
and hits are streamed from the driver or redirected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from pullthrough.cache.blobs import (
    BlobAnswer,
    BlobCache,
    BlobRedirect,
    BlobStream,
    StoredBlob,
)
from pullthrough.cache.byte_range import ByteRange
from pullthrough.cache.fill.follow import FollowFill
from pullthrough.cache.fill.lead import LeadFill
from pullthrough.cache.fill.state import FillState, record_path
from pullthrough.cache.routing import Route
from pullthrough.cache.stats import StatsRecorder
from pullthrough.cache.upstreams import Upstreams
from pullthrough.config import RuleConfig
from pullthrough.errors import UpstreamInvalid
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import FileLocks
from pullthrough.upstream.client import RegistryClient
from tests.unit.test_fill import CONTENT, FakeClient

KEY = blob_key("sha256", Digest.of(CONTENT).hex)


class FakeUpload:
    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store = store
        self.key = key
        self.data = bytearray()
        self.aborted = False

    async def write(self, chunk: bytes) -> None:
        limit = self.store.fail_writes_after
        if limit is not None and len(self.data) + len(chunk) > limit:
            raise OSError("the object store refused a part")
        self.data.extend(chunk)
        self.store.events.append(f"write {len(self.data)}")

    async def complete(self) -> None:
        assert not self.aborted
        self.store.objects[self.key] = bytes(self.data)
        self.store.events.append("complete")

    async def abort(self) -> None:
        self.aborted = True
        self.store.events.append("abort")


class ObjectStore:
    """A driver without local files, and the metadata the fill writes to, in one fake:
    `events` is the order things happened in."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: list[FakeUpload] = []
        self.events: list[str] = []
        self.fail_writes_after: int | None = None
        self.repositories = self
        self.blobs = self

    # BlobDriver
    def local_path(self, key: str) -> Path | None:
        return None

    def upload(self, key: str) -> FakeUpload:
        upload = FakeUpload(self, key)
        self.uploads.append(upload)
        return upload

    async def size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise FileNotFoundError(key)
        data = self.objects[key][start:end]
        self.events.append(f"read {start}-{start + len(data)}")
        for at in range(0, len(data), 100_000):
            yield data[at : at + 100_000]

    async def put_file(self, key: str, source: Path) -> None:
        raise AssertionError("a driver with uploads is never handed the spool file")

    async def presigned_url(self, key: str, expires_in: float) -> str | None:
        return f"http://objects.test/{key}?expires={expires_in:.0f}"

    # The metadata's concept stores the commit uses: repositories.id, blobs.save.
    async def id(self, name: str, rule_prefix: str) -> int:
        return 1

    async def save(self, digest: str, size: int, repository_id: int) -> None:
        self.events.append(f"save {size}")


def lead(
    tmp_path: Path, client: FakeClient, store: ObjectStore, *, with_record: bool = False
) -> LeadFill:
    digest = Digest.of(CONTENT)
    lock = FileLocks(tmp_path).blob_fill(digest.algorithm, digest.hex) if with_record else None
    return LeadFill(
        digest=digest,
        repository="r/x",
        rule_prefix="r",
        upstream_repository="x",
        client=cast(RegistryClient, client),
        spool_dir=tmp_path,
        driver=cast(BlobDriver, store),
        metadata=cast(MetadataStore, store),
        final_path=None,
        deadline=30,
        lock=lock,
        record_path=record_path(tmp_path, digest.algorithm, digest.hex) if with_record else None,
    )


async def read_all(fill: LeadFill | FollowFill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in fill.read(start, end)])


async def finished(fill: LeadFill) -> None:
    assert fill.task is not None
    await fill.task


def spools(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("*.part"))


async def test_the_upload_is_completed_after_verification_then_the_row_is_written(
    tmp_path: Path,
) -> None:
    store = ObjectStore()
    fill = lead(tmp_path, FakeClient(CONTENT), store)
    fill.start()
    await fill.wait_started()
    results = await asyncio.gather(*(read_all(fill) for _ in range(3)), read_all(fill, 10, 20))
    assert results[:3] == [CONTENT] * 3
    assert results[3] == CONTENT[10:20]
    await finished(fill)

    assert fill.state is FillState.COMMITTED
    assert store.objects == {KEY: CONTENT}
    # Storage first, then the metadata row; the upload was fed while the download ran.
    assert store.events[-2:] == ["complete", f"save {len(CONTENT)}"]
    assert store.events[-3] == f"write {len(CONTENT)}"
    assert not spools(tmp_path)


async def test_the_upload_never_gets_the_last_byte_before_verification(tmp_path: Path) -> None:
    gate = asyncio.Event()
    store = ObjectStore()
    fill = lead(tmp_path, FakeClient(CONTENT, gate=gate), store)
    fill.start()
    await fill.wait_started()
    (upload,) = store.uploads
    for _ in range(200):
        if len(upload.data) == 65535:
            break
        await asyncio.sleep(0.01)
    # One upstream chunk arrived; the upload has it less the held-back final byte.
    assert len(upload.data) == 65535
    assert "complete" not in store.events
    gate.set()
    await finished(fill)
    assert store.objects[KEY] == CONTENT


async def test_wrong_bytes_abort_the_upload_and_store_nothing(tmp_path: Path) -> None:
    wrong = bytearray(CONTENT)
    wrong[-1] ^= 0xFF
    store = ObjectStore()
    fill = lead(tmp_path, FakeClient(bytes(wrong)), store)
    fill.start()
    await fill.wait_started()
    with pytest.raises(UpstreamInvalid, match="digest"):
        await read_all(fill)
    await finished(fill)

    assert fill.state is FillState.FAILED
    assert store.objects == {}
    (upload,) = store.uploads
    assert upload.aborted
    assert "complete" not in store.events
    assert not any(e.startswith("save") for e in store.events)
    assert len(upload.data) < len(CONTENT)
    assert not spools(tmp_path)


async def test_a_failing_upload_leaves_readers_every_byte_and_stores_nothing(
    tmp_path: Path,
) -> None:
    store = ObjectStore()
    store.fail_writes_after = 300_000
    fill = lead(tmp_path, FakeClient(CONTENT), store)
    fill.start()
    await fill.wait_started()
    assert await read_all(fill) == CONTENT
    await finished(fill)

    assert fill.state is FillState.COMMIT_FAILED
    assert store.objects == {}
    assert store.uploads[0].aborted
    assert not any(e.startswith("save") for e in store.events)
    assert not spools(tmp_path)


async def test_a_reader_after_the_commit_reads_the_object(tmp_path: Path) -> None:
    store = ObjectStore()
    fill = lead(tmp_path, FakeClient(CONTENT), store)
    fill.start()
    await finished(fill)
    assert not spools(tmp_path)  # the spool file is gone: only the object has the bytes

    assert await read_all(fill, 5, 500_005) == CONTENT[5:500_005]
    assert store.events[-1] == "read 5-500005"


async def test_a_follower_reads_the_spool_while_it_grows_then_learns_the_end(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()
    store = ObjectStore()
    digest = Digest.of(CONTENT)
    fill = lead(tmp_path, FakeClient(CONTENT, gate=gate), store, with_record=True)
    assert fill._lock is not None and await fill._lock.try_acquire()
    fill.start()
    await fill.wait_started()

    follower = FollowFill(
        digest=digest,
        lock=FileLocks(tmp_path).blob_fill(digest.algorithm, digest.hex),
        record_path=record_path(tmp_path, digest.algorithm, digest.hex),
        final_path=None,
        driver=cast(BlobDriver, store),
        deadline=30,
    )
    assert await follower.attach()
    reading = asyncio.create_task(read_all(follower))
    await asyncio.sleep(0.05)
    gate.set()
    assert await reading == CONTENT
    await finished(fill)
    assert store.objects == {KEY: CONTENT}
    assert not any(e.startswith("read") for e in store.events)  # the spool sufficed

    # A follower that comes once the fill is over (record and spool gone, lock free) finds
    # the object in storage and reads it through the driver.
    late = FollowFill(
        digest=digest,
        lock=FileLocks(tmp_path).blob_fill(digest.algorithm, digest.hex),
        record_path=record_path(tmp_path, digest.algorithm, digest.hex),
        final_path=None,
        driver=cast(BlobDriver, store),
        deadline=30,
    )
    assert await late.attach()
    assert late.state is FillState.COMMITTED
    assert late.size == len(CONTENT)  # so its clients get a Content-Length
    assert await read_all(late) == CONTENT
    assert store.events[-1] == f"read 0-{len(CONTENT)}"


class Counted:
    def __init__(self) -> None:
        self.hits: list[int] = []
        self.misses: list[int] = []

    def hit(self, prefix: str, sent: int) -> None:
        self.hits.append(sent)

    def miss(self, prefix: str, sent: int) -> None:
        self.misses.append(sent)


def blob_cache(store: ObjectStore, stats: Counted, tmp_path: Path) -> BlobCache:
    return BlobCache(
        cast(MetadataStore, store),
        cast(BlobDriver, store),
        cast(Upstreams, None),
        tmp_path,
        30,
        FileLocks(tmp_path),
        cast(StatsRecorder, stats),
    )


def stored_answer() -> BlobAnswer:
    rule = RuleConfig(prefix="r", upstream="https://registry.test")
    return BlobAnswer(Route(rule, "r/x", "x"), StoredBlob(KEY, len(CONTENT), None))


async def test_a_hit_without_a_local_file_streams_the_range_from_storage(tmp_path: Path) -> None:
    store, stats = ObjectStore(), Counted()
    store.objects[KEY] = CONTENT
    blobs = blob_cache(store, stats, tmp_path)

    body = await blobs.send(stored_answer(), ByteRange(100, 199))
    assert isinstance(body, BlobStream)
    assert body.content_range == f"bytes 100-199/{len(CONTENT)}"
    assert body.length == 100
    assert b"".join([c async for c in body.pieces() if isinstance(c, bytes)]) == CONTENT[100:200]

    whole = await blobs.send(stored_answer(), None)
    assert isinstance(whole, BlobStream) and whole.content_range is None
    assert b"".join([c async for c in whole.pieces() if isinstance(c, bytes)]) == CONTENT
    assert stats.hits == [100, len(CONTENT)]
    assert stats.misses == []


async def test_a_hit_is_redirected_when_asked_and_the_driver_signs_urls(tmp_path: Path) -> None:
    store, stats = ObjectStore(), Counted()
    store.objects[KEY] = CONTENT
    blobs = blob_cache(store, stats, tmp_path)

    body = await blobs.send(stored_answer(), ByteRange(0, 9), redirect_ttl=300)
    assert body == BlobRedirect(f"http://objects.test/{KEY}?expires=300")
    assert not any(e.startswith("read") for e in store.events)
    assert stats.hits == [10]
