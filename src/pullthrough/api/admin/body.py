"""Reading an admin request's JSON body: the media type, a size cap, strict JSON, then the
model; every way it can be wrong is a 4xx that says which."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from pullthrough import jsondoc
from pullthrough.api.admin.errors import Invalid, TooLarge, UnsupportedMediaType, invalid_from

MAX_BODY_BYTES = 1024 * 1024
JSON = "application/json"

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_document(request: web.Request) -> Any:
    """The body as decoded JSON (objects remember repeated keys, which are refused here)."""
    if request.content_type != JSON:
        sent = request.headers.get("Content-Type")
        shown = f"Content-Type {sent[:80]!r}" if sent else "no Content-Type"
        raise UnsupportedMediaType(f"the body must be JSON sent as {JSON}; got {shown}")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    while len(raw) <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    if not raw.strip():
        raise Invalid("the request needs a JSON body", [("body", "required")])
    try:
        document = jsondoc.loads(bytes(raw))
    except RecursionError:
        raise Invalid("the body is nested too deeply", [("body", "nested too deeply")]) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN and Infinity
        raise Invalid(f"the body is not valid JSON: {exc}", [("body", "not valid JSON")]) from None
    repeated = first_repeated_key(document)
    if repeated is not None:
        raise Invalid(f"{repeated}: given more than once", [(repeated, "given more than once")])
    return document


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    return parse_model(await read_document(request), model)


def parse_model(document: Any, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise invalid_from(exc) from None


def first_repeated_key(document: Any) -> str | None:
    """The dotted path of the first key some object of `document` holds twice, if any."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            repeated = jsondoc.duplicate_keys(value)
            if repeated:
                return f"{path}.{repeated[0]}" if path else repeated[0]
            stack.extend((f"{path}.{key}" if path else key, item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
    return None


def _too_large() -> TooLarge:
    return TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes, the most this API accepts")
