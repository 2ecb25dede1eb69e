"""The OpenAPI document and the routes come from one table: every route is documented, every
documented operation is routed, and the document is complete where clients rely on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import schemathesis
from aiohttp import web
from schemathesis.core.result import Ok

from pullthrough.api.admin import add_admin_routes
from pullthrough.api.admin.errors import ERROR_CLASSES
from pullthrough.api.admin.openapi import openapi_document
from pullthrough.api.admin.operations import API_ROOT, OPERATIONS
from pullthrough.api.app import ACCESS_KEY, CACHE_KEY

METHODS = ("get", "put", "post", "delete", "patch")


def _routes() -> set[tuple[str, str]]:
    # The serving application loads these routes at the first admin request (api/app.py).
    app = web.Application()
    add_admin_routes(app, CACHE_KEY, ACCESS_KEY)
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(API_ROOT + "/") and route.method != "*":
            found.add((route.method.lower(), path))
    return found


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_route_is_documented_and_every_operation_routed() -> None:
    document = openapi_document()
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    routed = _routes() - {("get", f"{API_ROOT}/openapi.json")}
    assert routed == documented
    assert len(documented) == len(OPERATIONS) == 36


def test_every_operation_documents_its_errors_in_the_admin_format() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            assert {"401", "403", "405"} <= statuses, where
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, where
                assert operation["requestBody"]["required"] is True
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                assert statuses & {"400", "404"}, where
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where
                elif status == "204":
                    assert "content" not in response, where
                else:
                    assert "application/json" in response["content"], where
    codes = document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
    assert set(codes) == {cls.code for cls in ERROR_CLASSES}


def test_references_resolve_and_inputs_refuse_unknown_fields() -> None:
    document = openapi_document()
    for node in _walk(document):
        if isinstance(node, dict) and "$ref" in node:
            assert _resolve(document, node["$ref"]) is not None
    bodies = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for item in document["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    }
    seen: set[str] = set()
    pending = list(bodies)
    while pending:
        reference = pending.pop()
        if reference in seen:
            continue
        seen.add(reference)
        for node in _walk(_resolve(document, reference)):
            if isinstance(node, dict) and node.get("type") == "object":
                # Condition's operator map is the one object keyed by the user's words.
                assert "additionalProperties" in node, (reference, node)
                assert node["additionalProperties"] is False or "properties" not in node
            if isinstance(node, dict) and "$ref" in node:
                pending.append(node["$ref"])
    assert len(seen) >= 8


def test_schemathesis_reads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    assert len(results) == len(OPERATIONS)
