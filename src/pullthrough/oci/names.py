"""Repository names and tags, validated against the OCI distribution grammar."""

from __future__ import annotations

import re

from pullthrough.errors import NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise NAME_INVALID."""
    if not name:
        raise NameInvalid("repository name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(f"repository name is longer than {MAX_NAME_LENGTH} characters")
    if _NAME.fullmatch(name) is None:
        raise NameInvalid(
            f"invalid repository name {name[:160]!r}: path components are lowercase letters "
            "and digits separated by '.', '_', '__' or '-', joined by '/'"
        )
    return name


def validate_tag(tag: str) -> str:
    if _TAG.fullmatch(tag) is None:
        raise TagInvalid(
            f"invalid tag {tag[:160]!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag
