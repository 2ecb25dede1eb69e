"""Translating between ECR's shapes and pullthrough's: ARNs, times, and reading the members of
a request body with AWS's errors when one is missing or of the wrong type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pullthrough.api.ecr.errors import invalid_parameter
from pullthrough.config import AwsApiConfig

T = TypeVar("T")

SECRET_ARN_MARKER = ":secret:"  # noqa: S105 (a part of an ARN, not a password)


def member(
    body: Mapping[str, Any], name: str, kind: type[T], *, required: bool = False
) -> T | None:
    """`body[name]` if it is a `kind`; None when absent (an error when `required`)."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_parameter(f"Invalid parameter: '{name}' is required")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_parameter(f"Invalid parameter: '{name}' must be a {kind.__name__}")
    return value


def text(body: Mapping[str, Any], name: str) -> str:
    """A required string member."""
    value = member(body, name, str, required=True)
    assert value is not None
    return value


def texts(body: Mapping[str, Any], name: str) -> list[str] | None:
    values = member(body, name, list)
    if values is None:
        return None
    if not all(isinstance(v, str) for v in values):
        raise invalid_parameter(f"Invalid parameter: '{name}' must be a list of strings")
    return [str(v) for v in values]


def repository_arn(aws: AwsApiConfig, name: str) -> str:
    return f"arn:aws:ecr:{aws.region}:{aws.account_id}:repository/{name}"


def secret_arn(aws: AwsApiConfig, name: str) -> str:
    return f"arn:aws:secretsmanager:{aws.region}:{aws.account_id}:secret:{name}"


def secret_name(reference: str) -> str:
    """The secret a Secrets Manager SecretId or an ECR credentialArn names: an ARN as
    `secret_arn` makes them, or the name itself."""
    if reference.startswith("arn:") and SECRET_ARN_MARKER in reference:
        return reference.split(SECRET_ARN_MARKER, 1)[1]
    return reference


def principal_arn(aws: AwsApiConfig, kind: str, name: str) -> str:
    return f"arn:aws:iam::{aws.account_id}:{'user' if kind == 'user' else 'apikey'}/{name}"


def page(items: list[T], body: Mapping[str, Any], limit: int = 1000) -> tuple[list[T], str | None]:
    """One page of `items` by `nextToken` (an offset) and `maxResults`, and the next token."""
    token = member(body, "nextToken", str)
    try:
        start = int(token) if token else 0
    except ValueError:
        raise invalid_parameter(
            "Invalid parameter: 'nextToken' is not one this server gave"
        ) from None
    most = member(body, "maxResults", int) or limit
    if not 1 <= most <= limit:
        raise invalid_parameter(f"Invalid parameter: 'maxResults' must be from 1 to {limit}")
    chunk = items[start : start + most]
    more = start + most < len(items)
    return chunk, str(start + most) if more else None
