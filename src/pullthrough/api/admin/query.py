"""Query parameters of admin requests, checked as strictly as their JSON schemas say."""

from __future__ import annotations

import re

from aiohttp import web

from pullthrough.api.admin.errors import Invalid

_DIGITS = re.compile(r"[0-9]{1,9}")


def text_parameter(
    request: web.Request, name: str, *, required: bool = False, max_length: int = 255
) -> str | None:
    value = request.query.get(name)
    if value is None:
        if required:
            raise Invalid(f"the query parameter {name!r} is required", [(name, "required")])
        return None
    if len(value) > max_length:
        raise Invalid(
            f"{name}: at most {max_length} characters", [(name, f"at most {max_length} characters")]
        )
    return value


def integer_parameter(request: web.Request, name: str, minimum: int, maximum: int) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not minimum <= int(value) <= maximum:
        problem = f"a whole number from {minimum} to {maximum}"
        raise Invalid(f"{name}: {problem}, not {value[:40]!r}", [(name, problem)])
    return int(value)
