"""The admin API's errors: one closed set of codes, each with its HTTP status, rendered as
`{"code", "message", "fields": [{"field", "message"}]}` (never the OCI error body)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web
from pydantic import ValidationError

from pullthrough.api.admin.fields import PATTERN_HINTS
from pullthrough.errors import RegistryError


class AdminError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        fields: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields or [])
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "fields": [{"field": field, "message": text} for field, text in self.fields],
        }


class Invalid(AdminError):
    code = "INVALID"
    status = 400


class Unauthorized(AdminError):
    code = "UNAUTHORIZED"
    status = 401


class Denied(AdminError):
    code = "DENIED"
    status = 403


class NotFound(AdminError):
    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(AdminError):
    code = "METHOD_NOT_ALLOWED"
    status = 405


class Conflict(AdminError):
    code = "CONFLICT"
    status = 409


class TooLarge(AdminError):
    code = "TOO_LARGE"
    status = 413


class UnsupportedMediaType(AdminError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


# Every error class, for the OpenAPI document's list of codes.
ERROR_CLASSES: tuple[type[AdminError], ...] = (
    Invalid,
    Unauthorized,
    Denied,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TooLarge,
    UnsupportedMediaType,
    AdminError,
)


def field_path(location: tuple[int | str, ...], prefix: str = "") -> str:
    """`rules.0.upstream` from a pydantic error location; `body` for the whole body."""
    path = ".".join(str(part) for part in location)
    if prefix:
        return f"{prefix}.{path}" if path else prefix
    return path or "body"


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    """A 400 naming every field pydantic refused, each once, with its first complaint."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        # A check across fields names the one to fix in its context.
        location = (
            *error["loc"],
            *([error["ctx"]["field"]] if "field" in error.get("ctx", {}) else []),
        )
        name = field_path(tuple(location), prefix)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            message = PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern")), message)
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required"
        fields.setdefault(name, message)
    named = ", ".join(fields)
    first = next(iter(fields.items()))
    summary = f"{first[0]}: {first[1]}" if len(fields) == 1 else f"invalid fields: {named}"
    return Invalid(summary, list(fields.items()))


_BY_STATUS: dict[int, type[AdminError]] = {
    cls.status: cls for cls in ERROR_CLASSES if cls is not AdminError
}


def from_registry_error(error: RegistryError) -> AdminError:
    """The admin form of an error raised by code shared with the registry API (authentication,
    name validation)."""
    cls = _BY_STATUS.get(error.status, AdminError)
    if cls is AdminError and 400 <= error.status < 500:
        cls = Invalid
    return cls(error.message, headers=error.headers)


def error_response(error: AdminError) -> web.Response:
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        headers=error.headers,
        content_type="application/json",
    )
