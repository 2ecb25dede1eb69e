"""What a single byte range (`bytes=a-b`, `a-`, `-n`) selects of a blob of a known size."""

from __future__ import annotations

from dataclasses import dataclass

from pullthrough.errors import RangeNotSatisfiable


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
