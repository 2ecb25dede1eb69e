"""Single byte ranges (`bytes=a-b`, `a-`, `-n`) resolved against a blob's size."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pullthrough.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int | None  # None: a suffix range, the last `last` bytes
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """The half-open span [start, end) this range selects in a blob of `size` bytes."""
        unsatisfiable = RangeNotSatisfiable(
            f"range {self} is outside the blob's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
        if self.first is None:
            assert self.last is not None
            if self.last == 0 or size == 0:
                raise unsatisfiable
            return max(0, size - self.last), size
        if self.first >= size:
            raise unsatisfiable
        end = size if self.last is None else min(self.last + 1, size)
        return self.first, end

    def __str__(self) -> str:
        first = "" if self.first is None else str(self.first)
        last = "" if self.last is None else str(self.last)
        return f"bytes={first}-{last}"


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
