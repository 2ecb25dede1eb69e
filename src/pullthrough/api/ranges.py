"""The `Range` header of a blob GET: one range, `bytes=a-b`, `a-` or `-n`. What it selects of a
blob is the cache's to decide (`cache/byte_range.py`)."""

from __future__ import annotations

import re

from pullthrough.cache.byte_range import ByteRange
from pullthrough.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_range(header: str | None) -> ByteRange | None:
    """The range a `Range` header asks for; None when there is none. Malformed → 416."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise RangeNotSatisfiable(
            f"unsupported Range {header[:100]!r}: use one range, bytes=first-last, bytes=first- "
            "or bytes=-suffix"
        )
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        raise RangeNotSatisfiable(f"Range {header[:100]!r} names no bytes")
    first = int(first_text) if first_text else None
    last = int(last_text) if last_text else None
    if first is not None and last is not None and last < first:
        raise RangeNotSatisfiable(f"Range {header[:100]!r} ends before it starts")
    return ByteRange(first, last)
