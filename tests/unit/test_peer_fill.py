"""PeerFill against a fake fills endpoint (aiohttp, in process): readers follow one connection,
the digest is verified before the last byte, a broken stream resumes, a failing peer fails every
reader short; and the peer tokens that guard the endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pullthrough.access.peer_tokens import SCHEME, TOKEN_SECONDS, PeerTokens
from pullthrough.cache.fill.follow import FollowFill
from pullthrough.cache.fill.peer import (
    FILLS_PATH,
    OFFSET_HEADER,
    SIZE_HEADER,
    STATE_HEADER,
    PeerFill,
    PeerHasNoFill,
    host_fill,
)
from pullthrough.cache.fill.reading import Fill
from pullthrough.cache.fill.state import FillRecord, FillState, record_path
from pullthrough.errors import Unauthorized, UpstreamInvalid, UpstreamUnavailable
from pullthrough.oci.digest import Digest
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.locks import FileLocks, Locks

CONTENT = bytes(range(256)) * 2048  # 512 KiB
DIGEST = Digest.of(CONTENT)
KEY = bytes(range(32))
PIECE = 16384


@dataclass
class FakePeer:
    """The leading replica's fills endpoint, as much of it as PeerFill sees."""

    tokens: PeerTokens
    content: bytes = CONTENT
    # Stop after this many bytes (of the whole blob) and wait for `gate`.
    hold_at: int | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    # Cut the connection at this byte, on the first `drops` requests.
    drop_at: int | None = None
    drops: int = 1_000
    status: int = 200
    offsets: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        try:
            self.tokens.check(request.headers.get("Authorization"), digest)
        except Unauthorized as exc:
            return web.json_response(exc.body(), status=401)
        if self.status != 200:
            body = {"errors": [{"code": "BLOB_UNKNOWN", "message": "no fill here"}]}
            return web.json_response(body, status=self.status)
        offset = int(request.query["offset"])
        self.offsets.append(offset)
        response = web.StreamResponse(
            headers={
                OFFSET_HEADER: str(offset),
                SIZE_HEADER: str(len(self.content)),
                STATE_HEADER: "running",
            }
        )
        response.content_length = len(self.content) - offset
        await response.prepare(request)
        drop = self.drop_at if len(self.offsets) <= self.drops else None
        position, end = offset, len(self.content)
        while position < end:
            if drop is not None and position >= drop:
                # Let the bytes sent reach the reader first: a reset that overtakes them
                # would discard them from its buffer, and the resume would start earlier.
                await asyncio.sleep(0.2)
                assert request.transport is not None
                request.transport.abort()
                return response
            stop = min(end, position + PIECE)
            if self.hold_at is not None:
                if position >= self.hold_at:
                    await self.gate.wait()
                else:
                    stop = min(stop, self.hold_at)
            await response.write(self.content[position:stop])
            position = stop
        await response.write_eof()
        return response


@pytest.fixture
def peer() -> FakePeer:
    return FakePeer(PeerTokens(KEY))


@pytest.fixture
async def peer_url(peer: FakePeer) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(FILLS_PATH + "{digest}", peer.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
        for fill in MADE:
            await fill.close()
        MADE.clear()


MADE: list[PeerFill] = []


def make_fill(
    peer_url: str, session: aiohttp.ClientSession, spool_dir: Path, key: bytes = KEY
) -> PeerFill:
    """A fill of the peer's blob; closed when the test ends."""
    fill = PeerFill(
        digest=DIGEST,
        repository="up/team/app",
        peer_url=peer_url,
        session=session,
        tokens=PeerTokens(key),
        driver=FilesystemDriver(spool_dir.parent / "storage"),
        spool_dir=spool_dir,
        deadline=60,
    )
    MADE.append(fill)
    return fill


async def read_all(fill: PeerFill) -> bytes:
    return b"".join([chunk async for chunk in fill.read(0, None)])


async def test_readers_follow_one_connection_and_get_bytes_before_the_peer_finishes(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    peer.hold_at = len(CONTENT) // 2
    fill = make_fill(peer_url, session, spool_dir)
    fill.start()
    await fill.wait_started()
    assert fill.size == len(CONTENT)

    first = fill.read(0, None)
    early = await asyncio.wait_for(anext(first), 30)
    assert early == CONTENT[: len(early)]
    running = fill.state
    assert running is FillState.RUNNING, "the first bytes came only after the whole blob"
    others = [asyncio.create_task(read_all(fill)) for _ in range(3)]

    peer.gate.set()
    rest = b"".join([chunk async for chunk in first])
    assert hashlib.sha256(early + rest).hexdigest() == DIGEST.hex
    for got in await asyncio.gather(*others):
        assert got == CONTENT
    assert fill.state is FillState.VERIFIED
    assert peer.offsets == [0], "one connection to the peer for every reader"
    await fill.close()
    assert list(spool_dir.iterdir()) == []


async def test_wrong_bytes_from_the_peer_fail_every_reader_short_of_the_end(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    peer.content = CONTENT[:-1] + bytes([CONTENT[-1] ^ 0xFF])
    fill = make_fill(peer_url, session, spool_dir)
    fill.start()
    received = bytearray()
    with pytest.raises(UpstreamInvalid, match=re.escape(peer_url)):
        async for chunk in fill.read(0, None):
            received += chunk
    assert len(received) < len(CONTENT)
    assert fill.state is FillState.FAILED
    assert list(spool_dir.iterdir()) == []


async def test_a_peer_whose_fill_fails_cuts_the_stream_and_every_reader_fails_short(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    peer.drop_at = len(CONTENT) // 2
    fill = make_fill(peer_url, session, spool_dir)
    fill.start()
    received = bytearray()
    with pytest.raises(UpstreamUnavailable, match=re.escape(f"peer {peer_url}")) as failure:
        async for chunk in fill.read(0, None):
            received += chunk
    assert "broke at byte" in failure.value.message
    assert bytes(received) == CONTENT[: len(received)]
    assert len(received) <= len(CONTENT) // 2
    assert fill.state is FillState.FAILED
    with pytest.raises(UpstreamUnavailable):
        await fill.wait_done()


async def test_a_broken_stream_resumes_at_the_byte_reached(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    peer.drop_at, peer.drops = len(CONTENT) // 2, 1
    fill = make_fill(peer_url, session, spool_dir)
    fill.start()
    assert await read_all(fill) == CONTENT
    assert fill.state is FillState.VERIFIED
    assert len(peer.offsets) == 2
    assert 0 < peer.offsets[1] <= len(CONTENT) // 2
    await fill.close()


async def test_a_peer_without_the_fill_says_so(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    peer.status = 404
    fill = make_fill(peer_url, session, spool_dir)
    fill.start()
    with pytest.raises(PeerHasNoFill, match=re.escape(f"peer {peer_url} has no fill of {DIGEST}")):
        await fill.wait_started()
    assert list(spool_dir.iterdir()) == []


async def test_a_replica_with_another_token_key_is_refused(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    fill = make_fill(peer_url, session, spool_dir, key=bytes(32))
    fill.start()
    with pytest.raises(UpstreamUnavailable, match="PULLTHROUGH_TOKEN_KEY"):
        await fill.wait_started()
    assert peer.offsets == []


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_peer_token_opens_one_digest_for_a_minute(clock: Clock) -> None:
    tokens = PeerTokens(KEY, clock=clock)
    header = tokens.authorization(str(DIGEST))
    assert header.startswith(f"{SCHEME} ")
    tokens.check(header, str(DIGEST))
    other = str(Digest.of(b"other"))
    with pytest.raises(Unauthorized, match="not signed"):
        tokens.check(header, other)
    with pytest.raises(Unauthorized, match="not signed"):
        PeerTokens(bytes(32), clock=clock).check(header, str(DIGEST))
    for missing in (None, "", "Bearer abc", f"{SCHEME} x.y", f"{SCHEME} 123"):
        with pytest.raises(Unauthorized, match=r"no peer token|not signed") as refused:
            tokens.check(missing, str(DIGEST))
        assert refused.value.status == 401
    clock.now += TOKEN_SECONDS + 60
    with pytest.raises(Unauthorized, match="expired"):
        tokens.check(header, str(DIGEST))


def test_a_token_from_far_in_the_future_is_refused(clock: Clock) -> None:
    """A replica whose clock runs ahead cannot mint tokens that live for hours here."""
    ahead = Clock()
    ahead.now = clock.now + 3600
    header = PeerTokens(KEY, clock=ahead).authorization(str(DIGEST))
    with pytest.raises(Unauthorized, match="expired"):
        PeerTokens(KEY, clock=clock).check(header, str(DIGEST))


class ElsewhereLock:
    """A fill lease another replica holds."""

    async def try_acquire(self) -> bool:
        return False

    async def acquire(self) -> None:
        raise AssertionError("the endpoint never waits for a lease")

    async def release(self) -> None:
        return None

    async def is_free(self) -> bool:
        return False

    async def holder_url(self) -> str | None:
        return "http://10.0.0.8:5000"


class ElsewhereLocks:
    def named(self, *parts: str) -> ElsewhereLock:
        return ElsewhereLock()

    def blob_fill(self, algorithm: str, hex_digest: str) -> ElsewhereLock:
        return ElsewhereLock()

    async def close(self) -> None:
        return None


async def test_the_endpoint_follows_another_worker_of_this_host(tmp_path: Path) -> None:
    """The fill another worker leads on this host: followed through its record and spool."""
    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    driver = FilesystemDriver(tmp_path)

    async def find(locks: Locks) -> Fill | None:
        return await host_fill(
            DIGEST,
            leading=(),
            locks=locks,
            driver=driver,
            spool_dir=spool_dir,
            deadline=60,
            own_url="http://10.0.0.7:5000",
        )

    assert await find(FileLocks(spool_dir)) is None, "no worker fills it"
    assert await find(ElsewhereLocks()) is None, "another replica fills it"

    # The other worker: holds the fill lock, has written part of the spool, published a record.
    worker_lock = FileLocks(spool_dir).blob_fill(DIGEST.algorithm, DIGEST.hex)
    assert await worker_lock.try_acquire()
    spool = spool_dir / "0123-spool.part"
    spool.write_bytes(CONTENT[:1000])
    record = record_path(spool_dir, DIGEST.algorithm, DIGEST.hex)
    FillRecord(spool=spool.name, size=len(CONTENT), repository="up/team/app").write(record)

    fill = await find(FileLocks(spool_dir))
    assert fill is not None
    assert fill.size == len(CONTENT)
    reader = fill.read(0, None)
    received = bytearray(await asyncio.wait_for(anext(reader), 30))
    assert bytes(received) == CONTENT[:999], "all the worker wrote but the last byte"

    spool.write_bytes(CONTENT)
    FillRecord(
        spool=spool.name,
        size=len(CONTENT),
        repository="up/team/app",
        state=FillState.VERIFIED,
    ).write(record)
    received += b"".join([chunk async for chunk in reader])
    assert bytes(received) == CONTENT
    await worker_lock.release()


async def test_the_endpoint_serves_this_workers_own_fill_first(tmp_path: Path) -> None:
    class Leading:
        digest = DIGEST
        state = FillState.RUNNING

    leading = cast(Fill, Leading())
    found = await host_fill(
        DIGEST,
        leading=(leading,),
        locks=FileLocks(tmp_path),
        driver=FilesystemDriver(tmp_path),
        spool_dir=tmp_path,
        deadline=60,
        own_url="http://10.0.0.7:5000",
    )
    assert found is leading


async def test_other_workers_of_the_replica_follow_the_peer_fill_through_its_record(
    peer: FakePeer, peer_url: str, session: aiohttp.ClientSession, spool_dir: Path
) -> None:
    """One stream per replica: the worker streaming from the peer publishes a record under a
    lock of this host, and another worker follows it instead of opening its own stream."""
    peer.hold_at = len(CONTENT) // 2
    host_locks = FileLocks(spool_dir)
    lock = host_locks.blob_fill(DIGEST.algorithm, DIGEST.hex)
    assert await lock.try_acquire()
    record = record_path(spool_dir, DIGEST.algorithm, DIGEST.hex)
    driver = FilesystemDriver(spool_dir.parent / "storage")
    fill = PeerFill(
        digest=DIGEST,
        repository="up/team/app",
        peer_url=peer_url,
        session=session,
        tokens=PeerTokens(KEY),
        driver=driver,
        spool_dir=spool_dir,
        deadline=60,
        lock=lock,
        record_path=record,
    )
    MADE.append(fill)
    fill.start()
    await fill.wait_started()

    other_worker = FollowFill(
        digest=DIGEST,
        lock=FileLocks(spool_dir).blob_fill(DIGEST.algorithm, DIGEST.hex),
        record_path=record,
        final_path=None,
        driver=driver,
        deadline=60,
    )
    assert await asyncio.wait_for(other_worker.attach(), 30)
    assert other_worker.size == len(CONTENT)
    reader = other_worker.read(0, None)
    early = await asyncio.wait_for(anext(reader), 30)
    assert early == CONTENT[: len(early)]
    peer.gate.set()
    assert early + b"".join([chunk async for chunk in reader]) == CONTENT
    assert peer.offsets == [0]
    await fill.wait_done()
    assert await lock.is_free(), "the host lock is released when the fill ends"
    assert FillRecord.read(record) is not None, "the record stays for late followers"
