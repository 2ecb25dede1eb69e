"""LeadFill with a fake upstream at the client seam: verify, commit, resume, fail every reader."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from pullthrough.cache.fill import spool
from pullthrough.cache.fill.lead import LeadFill
from pullthrough.cache.fill.reading import SpoolSpan
from pullthrough.cache.fill.state import FillState
from pullthrough.errors import BlobUnknown, UpstreamInvalid, UpstreamUnavailable
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.upstream.client import RegistryClient

CONTENT = bytes(range(256)) * 4096  # 1 MiB


class FakeBody:
    def __init__(
        self,
        data: bytes,
        offset: int,
        total: int,
        fail_after: int | None,
        gate: asyncio.Event | None,
    ) -> None:
        self.status = 206 if offset else 200
        self.offset = offset
        self.total_size = total
        self._data = data
        self._fail_after = fail_after
        self._gate = gate

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        for start in range(0, len(self._data), 65536):
            if self._fail_after is not None and sent >= self._fail_after:
                raise UpstreamUnavailable("connection reset by upstream test")
            if self._gate is not None and start > 0:
                await self._gate.wait()
            chunk = self._data[start : start + 65536]
            sent += len(chunk)
            yield chunk

    async def close(self) -> None:
        return None


class FakeClient:
    name = "fake"

    def __init__(
        self,
        data: bytes,
        *,
        fail_first_after: int | None = None,
        ignore_range: bool = False,
        gate: asyncio.Event | None = None,
        missing: bool = False,
    ) -> None:
        self.data = data
        self.opens: list[int] = []
        self._fail_first_after = fail_first_after
        self._ignore_range = ignore_range
        self._gate = gate
        self._missing = missing

    async def open_blob(self, repo: str, digest: str, offset: int = 0) -> FakeBody:
        self.opens.append(offset)
        if self._missing:
            raise BlobUnknown(f"blob {digest} not found upstream")
        fail = self._fail_first_after if len(self.opens) == 1 else None
        if self._ignore_range:
            offset = 0
        return FakeBody(self.data[offset:], offset, len(self.data), fail, self._gate)


class Committed:
    """Storage and metadata in one fake: the stored file goes to `target`, the blob's recorded
    size to `calls`."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.calls: list[int] = []
        self.refuse_put = False
        # The metadata's concept stores the commit uses: repositories.id, blobs.save.
        self.repositories = self
        self.blobs = self

    def upload(self, key: str) -> None:
        return None  # like the filesystem: the spool file is handed over (`put_file`)

    async def put_file(self, key: str, source: Path) -> None:
        if self.refuse_put:
            raise OSError(28, "No space left on device")
        source.rename(self.target)

    async def id(self, name: str, rule_prefix: str) -> int:
        return 1

    async def save(self, digest: str, size: int, repository_id: int) -> None:
        self.calls.append(size)


def make_fill(tmp_path: Path, client: FakeClient, digest: Digest) -> tuple[LeadFill, Committed]:
    commit = Committed(tmp_path / "final")
    fill = LeadFill(
        digest=digest,
        repository="r/x",
        rule_prefix="r",
        upstream_repository="x",
        client=cast(RegistryClient, client),
        spool_dir=tmp_path,
        driver=cast(BlobDriver, commit),
        metadata=cast(MetadataStore, commit),
        final_path=tmp_path / "final",
        deadline=30,
    )
    return fill, commit


async def finished(fill: LeadFill) -> None:
    """Until the fill has committed (or failed): `wait_done` returns once bytes are verified."""
    assert fill.task is not None
    await fill.task
    await fill.wait_done()


async def read_all(fill: LeadFill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in fill.read(start, end)])


async def test_fill_commits_verified_bytes_and_every_reader_gets_them(tmp_path: Path) -> None:
    fill, commit = make_fill(tmp_path, FakeClient(CONTENT), Digest.of(CONTENT))
    fill.start()
    await fill.wait_started()
    results = await asyncio.gather(*(read_all(fill) for _ in range(5)), read_all(fill, 10, 20))
    assert all(r == CONTENT for r in results[:5])
    assert results[5] == CONTENT[10:20]
    await finished(fill)
    assert fill.state is FillState.COMMITTED
    assert commit.calls == [len(CONTENT)]
    assert (tmp_path / "final").read_bytes() == CONTENT
    assert not list(tmp_path.glob("*.part"))


async def test_readers_never_get_the_last_byte_before_verification(tmp_path: Path) -> None:
    gate = asyncio.Event()
    client = FakeClient(CONTENT, gate=gate)
    fill, _ = make_fill(tmp_path, client, Digest.of(CONTENT))
    fill.start()
    await fill.wait_started()
    received = bytearray()

    async def reader() -> None:
        async for chunk in fill.read(0, None):
            received.extend(chunk)

    task = asyncio.create_task(reader())
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(received) == 65535:
            break
    # One upstream chunk arrived; the reader streams it, less the held-back final byte.
    assert len(received) == 65535
    gate.set()
    await task
    assert bytes(received) == CONTENT


async def test_wrong_bytes_fail_every_reader_and_store_nothing(tmp_path: Path) -> None:
    wrong = bytearray(CONTENT)
    wrong[-1] ^= 0xFF
    fill, commit = make_fill(tmp_path, FakeClient(bytes(wrong)), Digest.of(CONTENT))
    fill.start()
    await fill.wait_started()
    received = bytearray()
    with pytest.raises(UpstreamInvalid, match="digest"):
        async for chunk in fill.read(0, None):
            received.extend(chunk)
    assert len(received) < len(CONTENT)
    with pytest.raises(UpstreamInvalid):
        await finished(fill)
    assert commit.calls == []
    assert not list(tmp_path.iterdir())


async def test_a_failed_commit_still_gives_readers_every_verified_byte(tmp_path: Path) -> None:
    gate = asyncio.Event()
    fill, commit = make_fill(tmp_path, FakeClient(CONTENT, gate=gate), Digest.of(CONTENT))
    commit.refuse_put = True
    fill.start()
    await fill.wait_started()
    reading = asyncio.create_task(read_all(fill))  # opened before the commit fails
    await asyncio.sleep(0.05)
    gate.set()

    assert await reading == CONTENT
    await finished(fill)  # the bytes verified: waiting for them raises nothing
    assert fill.state is FillState.COMMIT_FAILED
    assert fill.error is not None and "No space left" in fill.error.message
    assert commit.calls == []
    assert not (tmp_path / "final").exists()
    assert not list(tmp_path.glob("*.part"))


async def test_broken_body_resumes_with_range(tmp_path: Path) -> None:
    client = FakeClient(CONTENT, fail_first_after=300_000)
    fill, commit = make_fill(tmp_path, client, Digest.of(CONTENT))
    fill.start()
    await fill.wait_started()
    assert await read_all(fill) == CONTENT
    await finished(fill)
    assert client.opens[0] == 0
    assert client.opens[1] > 0
    assert commit.calls == [len(CONTENT)]


async def test_upstream_ignoring_range_is_skipped_forward(tmp_path: Path) -> None:
    client = FakeClient(CONTENT, fail_first_after=300_000, ignore_range=True)
    fill, _ = make_fill(tmp_path, client, Digest.of(CONTENT))
    fill.start()
    await finished(fill)
    assert (tmp_path / "final").read_bytes() == CONTENT
    assert hashlib.sha256((tmp_path / "final").read_bytes()).hexdigest() == fill.digest.hex


async def test_missing_upstream_blob_fails_before_headers(tmp_path: Path) -> None:
    fill, _ = make_fill(tmp_path, FakeClient(CONTENT, missing=True), Digest.of(CONTENT))
    fill.start()
    with pytest.raises(BlobUnknown):
        await fill.wait_started()
    assert not list(tmp_path.iterdir())


async def test_a_reader_at_the_head_is_sent_what_is_not_yet_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing to the spool file stalls; a reader still gets every received byte but the last,
    from memory, and the rest once the file has it and the digest is verified."""
    writes_may_go = threading.Event()
    real_write = spool._write

    def stalled_write(fd: int, pieces: list[bytes]) -> int:
        writes_may_go.wait(10)
        return real_write(fd, pieces)

    monkeypatch.setattr(spool, "_write", stalled_write)
    fill, commit = make_fill(tmp_path, FakeClient(CONTENT), Digest.of(CONTENT))
    fill.start()
    await fill.wait_started()
    received = bytearray()
    kinds: set[type] = set()

    async def reader() -> None:
        async for piece in fill.spans(0, None):
            kinds.add(type(piece))
            if isinstance(piece, SpoolSpan):
                piece = os.pread(piece.file.fileno(), piece.count, piece.offset)
            received.extend(piece)

    task = asyncio.create_task(reader())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(received) == len(CONTENT) - 1:
            break
    assert len(received) == len(CONTENT) - 1
    assert fill.written == 0  # nothing is in the file yet: all of it came from memory
    assert kinds == {bytes}
    assert bytes(received) == CONTENT[:-1]
    writes_may_go.set()
    await task
    await finished(fill)
    assert bytes(received) == CONTENT
    assert commit.calls == [len(CONTENT)]


async def test_a_reader_behind_the_head_is_given_spans_of_the_file(tmp_path: Path) -> None:
    fill, _ = make_fill(tmp_path, FakeClient(CONTENT), Digest.of(CONTENT))
    fill.start()
    await finished(fill)
    data = bytearray()
    async for piece in fill.spans(5, None):
        assert isinstance(piece, SpoolSpan)  # a span is read while the reading goes on
        data.extend(os.pread(piece.file.fileno(), piece.count, piece.offset))
    assert data == CONTENT[5:]
