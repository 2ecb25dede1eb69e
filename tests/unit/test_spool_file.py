"""The spool file's writer: O_DIRECT writes of whole blocks where the file system takes them,
the blob's tail through the page cache, and a fall back to the page cache if a direct write is
refused; what is not yet in the file is always what a reader at the head is given."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from pullthrough.cache.fill.spool import ALIGNMENT, DIRECT_SEGMENT, SpoolFile, SpoolWriter


def _pieces(seed: int, total: int) -> list[bytes]:
    """Random bytes cut at random places, from 1 byte to a little over a segment."""
    chance = random.Random(seed)
    pieces, left = [], total
    while left:
        size = min(left, chance.choice([1, 17, 4095, 4097, 65536, 300_001, DIRECT_SEGMENT + 5]))
        pieces.append(chance.randbytes(size))
        left -= size
    return pieces


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def test_direct_writes_are_whole_blocks_and_the_tail_goes_at_the_end(tmp_path: Path) -> None:
    pieces = _pieces(1, 5 * DIRECT_SEGMENT + 12_345)
    path = tmp_path / "blob.part"
    fd = _open(path)
    try:
        spool_file = SpoolFile(fd)
        assert spool_file.direct  # the tests' file system (ext4, tmpfs) takes O_DIRECT
        landed = 0
        for start in range(0, len(pieces), 3):
            count = spool_file.append(pieces[start : start + 3])
            assert count % ALIGNMENT == 0
            landed += count
            assert os.fstat(fd).st_size == landed  # what is counted is in the file
        assert landed < sum(map(len, pieces))
        landed += spool_file.finish()
        assert not spool_file.direct
    finally:
        os.close(fd)
    assert landed == sum(map(len, pieces))
    assert path.read_bytes() == b"".join(pieces)


def test_a_refused_direct_write_falls_back_to_the_page_cache_losing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = _pieces(2, 3 * DIRECT_SEGMENT + 999)
    real_write = os.write
    calls = 0

    def refusing_third(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing_third)
    path = tmp_path / "blob.part"
    fd = _open(path)
    try:
        spool_file = SpoolFile(fd)
        landed = sum(spool_file.append([piece]) for piece in pieces)
        assert not spool_file.direct
        landed += spool_file.finish()
    finally:
        os.close(fd)
    assert calls >= 3
    assert landed == sum(map(len, pieces))
    assert path.read_bytes() == b"".join(pieces)


async def test_bytes_not_yet_in_the_file_are_given_from_memory(tmp_path: Path) -> None:
    """At every point, the file's bytes up to `written`, and the bytes kept in memory from
    `kept_from` on, are what was received (though direct writes end mid-piece), and together
    they cover it all; the hash covers every byte."""
    pieces = _pieces(3, 4 * DIRECT_SEGMENT + 777)
    path = tmp_path / "blob.part"
    fd = _open(path)
    reading = os.open(path, os.O_RDONLY)
    hasher = hashlib.sha256()
    landings: list[int] = []
    writer = SpoolWriter(fd, hasher, landings.append)
    received = bytearray()
    try:
        for piece in pieces:
            await writer.write(piece)
            received.extend(piece)
            await asyncio.sleep(0)
            written, kept_from = writer.written, writer.kept_from
            assert kept_from <= written  # nothing leaves memory before it is in the file
            on_disk = os.pread(reading, written, 0)
            assert on_disk == received[:written]
            kept = b"".join(writer.in_memory(kept_from, writer.received))
            assert kept == received[kept_from:]
            middle = (kept_from + len(received)) // 2
            assert b"".join(writer.in_memory(middle, len(received))) == received[middle:]
        await writer.flush()
    finally:
        await writer.close()
        os.close(fd)
        os.close(reading)
    assert writer.written == sum(landings) == len(received)
    assert path.read_bytes() == received
    assert hasher.hexdigest() == hashlib.sha256(received).hexdigest()
