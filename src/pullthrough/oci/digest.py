"""Content digests (`algorithm:hex`), parsed strictly and computed incrementally."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pullthrough.errors import DigestInvalid

# Hex lengths of the algorithms the OCI image spec registers; anything else is refused.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-f0-9]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST.fullmatch(text)
        if match is None:
            raise DigestInvalid(f"invalid digest {text[:160]!r}: expected sha256:<64 hex digits>")
        algorithm, hexpart = match.groups()
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is None:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm!r} in {text[:160]!r}")
        if len(hexpart) != expected:
            raise DigestInvalid(
                f"invalid digest {text[:160]!r}: {algorithm} takes {expected} hex digits"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def is_digest(cls, text: str) -> bool:
        return ":" in text

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
