"""Repository names and tags, validated against the OCI distribution grammar."""

from __future__ import annotations

import re

from pullthrough.errors import NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255
TAG_GRAMMAR = "up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"


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


def is_tag(text: str) -> bool:
    """Whether `text` is a tag by the OCI grammar; a manifest reference that is neither this nor
    a digest names nothing that can exist."""
    return _TAG.fullmatch(text) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise TagInvalid(f"invalid tag {tag[:160]!r}: {TAG_GRAMMAR}")
    return tag
