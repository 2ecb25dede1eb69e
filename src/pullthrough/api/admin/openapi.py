"""The OpenAPI 3.1 document of the admin API, built from the operations table and the pydantic
models' JSON schemas: what it describes is what the routes do."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from pullthrough import __version__
from pullthrough.api.admin.fields import POLICY_DOCUMENT_SCHEMA
from pullthrough.api.admin.models import ErrorBody
from pullthrough.api.admin.operations import API_ROOT, OPERATIONS, POLICY_DOCUMENT, Operation

_REF = "#/components/schemas/{model}"
_JSON = "application/json"

ERROR_DESCRIPTIONS = {
    400: "INVALID: the request is malformed; `fields` names each bad field.",
    401: "UNAUTHORIZED: authentication is on and the caller did not log in (or failed to).",
    403: "DENIED: the registry policy does not grant the caller registry:Admin on *.",
    404: "NOT_FOUND: there is no such thing.",
    405: "METHOD_NOT_ALLOWED: the path exists but not with this method; see Allow.",
    409: "CONFLICT: the change clashes with what is stored; the message says with what.",
    413: "TOO_LARGE: the body is larger than 1 MiB.",
    415: "UNSUPPORTED_MEDIA_TYPE: the body must be sent as application/json.",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "How to log in."}},
    405: {"Allow": {"schema": {"type": "string"}, "description": "The methods the path takes."}},
}
_SUCCESS_DESCRIPTIONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "Done; no body"}


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[type[BaseModel], JsonSchemaMode] = {ErrorBody: "serialization"}
    for operation in OPERATIONS:
        if isinstance(operation.body, type):
            found[operation.body] = "validation"
        for model in operation.responses.values():
            if model is not None:
                found[model] = "serialization"
    return list(found.items())


def _schema_ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": _REF.format(model=name)}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {_JSON: {"schema": _schema_ref(ErrorBody)}},
    }
    if status in _ERROR_HEADERS:
        response["headers"] = _ERROR_HEADERS[status]
    return response


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        document["description"] = operation.description
    if operation.parameters:
        document["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "description": p.description,
                "schema": dict(p.schema),
            }
            for p in operation.parameters
        ]
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {_JSON: {"schema": _schema_ref(operation.body)}},
        }
    responses: dict[str, Any] = {}
    for status, model in operation.responses.items():
        responses[str(status)] = {"description": _SUCCESS_DESCRIPTIONS[status]}
        if model is not None:
            responses[str(status)]["content"] = {_JSON: {"schema": _schema_ref(model)}}
    for status in operation.error_statuses:
        responses[str(status)] = _error_response(status)
    document["responses"] = responses
    return document


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(_models(), ref_template=_REF)
    schemas = dict(definitions.get("$defs", {}))
    schemas[POLICY_DOCUMENT] = POLICY_DOCUMENT_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(API_ROOT + operation.path, {})[operation.method.lower()] = _operation(
            operation
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pullthrough admin API",
            "version": __version__,
            "description": (
                "Manage a pullthrough cache: rules, secrets, the registry policy, creation "
                "templates and scanning, and see what the cache holds and how it is doing. With "
                "auth enabled, callers need registry:Admin on * in the registry policy, except "
                "for POST /api/v1/login-token, which any principal calls for their own token."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "NAME:API_KEY, a user's password, or token:<login token>.",
                },
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A registry token from the /token endpoint.",
                },
            },
        },
        # `{}`: with auth off (loopback only) no credentials are needed.
        "security": [{"basicAuth": []}, {"bearerAuth": []}, {}],
    }
