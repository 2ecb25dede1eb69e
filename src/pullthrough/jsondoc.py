"""Decoding JSON documents people write (policies), keeping what `json` would hide.

`json` keeps only the last of two equal keys, which would silently drop, say, the first of two
`Action` entries; objects decoded here remember such keys so validation can refuse them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class JsonObject(dict[str, Any]):
    """A decoded JSON object that remembers the keys it saw more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicates: list[str] = []
        for key, _ in pairs:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        obj.duplicates = tuple(duplicates)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Like `json.loads`, with duplicate keys remembered and NaN/Infinity refused
    (raises ValueError, including UnicodeDecodeError and JSONDecodeError)."""
    return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)


def duplicate_keys(value: Any) -> tuple[str, ...]:
    return tuple(getattr(value, "duplicates", ()))


def json_type(value: Any) -> str:
    """How an error message names what it found: "a string", "null", "an object"…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
