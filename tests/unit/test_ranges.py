"""Byte ranges: parsing and resolving against a size."""

from __future__ import annotations

import pytest

from pullthrough.api.ranges import parse_range
from pullthrough.cache.byte_range import ByteRange
from pullthrough.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=5-100", 10, (5, 10)),
    ],
)
def test_resolve(header: str, size: int, span: tuple[int, int]) -> None:
    wanted = parse_range(header)
    assert wanted is not None
    assert wanted.resolve(size) == span


@pytest.mark.parametrize(
    "header", ["bytes=", "bytes=-", "bytes=5-2", "bytes=a-b", "items=0-1", "bytes=0-1,3-4", "0-1"]
)
def test_malformed_ranges_are_refused(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header)


@pytest.mark.parametrize("wanted", [ByteRange(10, None), ByteRange(None, 0), ByteRange(12, 20)])
def test_unsatisfiable_ranges_name_the_size(wanted: ByteRange) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        wanted.resolve(10)
    assert caught.value.headers == {"Content-Range": "bytes */10"}
    assert caught.value.status == 416


def test_no_header_no_range() -> None:
    assert parse_range(None) is None
