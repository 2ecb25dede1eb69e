"""The value types admin requests and responses are made of: names, URLs, durations, times and
the two JSON documents (registry policy, lifecycle policy) validated by their own grammars.

Each input type validates exactly what its JSON schema says (and sometimes more, where a
grammar cannot be written as a schema), so that the OpenAPI document never promises to accept
what the server refuses to look at.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from pullthrough.config import parse_duration
from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicy, LifecyclePolicyError
from pullthrough.lifecycle.policy_json import MAX_DOCUMENT_CHARS
from pullthrough.metadata.template_names import ROOT
from pullthrough.oci.names import MAX_NAME_LENGTH

_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"^{_COMPONENT}(/{_COMPONENT})*$"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9/_+=.@-]{1,255}$"  # noqa: S105 - a pattern, no secret
_HOST = r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
HOST_PATTERN = rf"^{_HOST}$"
UPSTREAM_PATTERN = rf"^https?://{_HOST}/?$"
TEMPLATE_PREFIX_PATTERN = rf"^({ROOT}|{_COMPONENT}(/{_COMPONENT})*)$"
USERNAME_PATTERN = r"^[^:]+$"
FILTER_PATTERN = r"^[a-z0-9*._/-]{1,256}$"  # a scanning rule's repository filter

# What a value matching each pattern looks like, for error messages (a regex helps no one).
PATTERN_HINTS = {
    NAME_PATTERN: "use lowercase letters and digits separated by '.', '_', '__' or '-', "
    "joined by '/' (like docker-hub or ghcr/acme)",
    SECRET_NAME_PATTERN: "use 1-255 letters, digits and / _ + = . @ - "
    "(like pullthrough/docker-hub)",
    HOST_PATTERN: "give a host name or address, with an optional :port (like docker.io)",
    UPSTREAM_PATTERN: "give the registry's base URL, http(s)://host[:port] without a path "
    "(like https://ghcr.io)",
    TEMPLATE_PREFIX_PATTERN: "give ROOT, or a repository name prefix (like docker-hub)",
    USERNAME_PATTERN: "cannot contain ':' (HTTP Basic splits on it)",
    FILTER_PATTERN: "use lowercase letters, digits, . _ / - and * as a wildcard",
}

RepositoryName = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)
]
SecretName = Annotated[str, Field(min_length=1, max_length=255, pattern=SECRET_NAME_PATTERN)]
Host = Annotated[str, Field(min_length=1, max_length=255, pattern=HOST_PATTERN)]
UpstreamUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        pattern=UPSTREAM_PATTERN,
        description="The registry's base URL, http(s), without a path.",
        examples=["https://registry-1.docker.io"],
    ),
]

# -- durations -------------------------------------------------------------------------------

MAX_DURATION = 100 * 365.25 * 86400  # a century: anything longer is a typo
_DURATION_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)?")
_DURATION_HINT = "a duration is a number of seconds (0 or more) or a string like 30s, 5m, 2h, 7d"
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
        {"type": "string", "pattern": rf"^{_DURATION_TEXT.pattern}$", "maxLength": 32},
    ],
    "description": "Seconds, or a string with a unit: ms, s, m, h, d, w (`5m`, `7d`).",
}


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, str) and (len(value) > 32 or not _DURATION_TEXT.fullmatch(value)):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, int | float) and not 0 <= value <= MAX_DURATION:
        raise ValueError(f"{_DURATION_HINT}, at most a century")
    seconds = parse_duration(value)
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"{_DURATION_HINT}, at most a century")
    return seconds


DurationInput = Annotated[float, PlainValidator(_duration), WithJsonSchema(DURATION_SCHEMA)]


def _nullable_duration(value: Any) -> float | None:
    return None if value is None else _duration(value)


NullableDurationInput = Annotated[
    float | None,
    PlainValidator(_nullable_duration),
    WithJsonSchema({"anyOf": [*DURATION_SCHEMA["anyOf"], {"type": "null"}]}),
]

# -- times -----------------------------------------------------------------------------------

_TIME_SCHEMA = {"type": "string", "format": "date-time", "examples": ["2026-11-28T17:00:00Z"]}
Time = Annotated[str, WithJsonSchema(_TIME_SCHEMA)]
NullableTime = Annotated[str | None, WithJsonSchema({"anyOf": [_TIME_SCHEMA, {"type": "null"}]})]


def iso_time(epoch: float) -> str:
    """`2026-11-28T17:00:00Z`: UTC, whole seconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else iso_time(epoch)


# -- documents with a grammar of their own -----------------------------------------------------

_NON_EMPTY_STRINGS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
}
_STRING_OR_LIST: dict[str, Any] = {
    "anyOf": [{"type": "string", "minLength": 1}, _NON_EMPTY_STRINGS]
}

# The IAM grammar as far as a schema can say it; access/registry_policy/ checks the rest (known
# actions, resources, condition operators and keys) and names the statement at fault. A null
# Sid or Id counts as left out, as access/registry_policy/document.py reads them.
_STATEMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["Effect", "Resource"],
    "properties": {
        "Sid": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
        "Effect": {"enum": ["Allow", "Deny"]},
        "Principal": {
            "anyOf": [
                {"const": "*"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {
                        key: _STRING_OR_LIST for key in ("AWS", "User", "Group", "ApiKey")
                    },
                },
            ]
        },
        "Action": _STRING_OR_LIST,
        "NotAction": _STRING_OR_LIST,
        "Resource": _STRING_OR_LIST,
        "Condition": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": _STRING_OR_LIST,
            },
        },
    },
}
POLICY_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["Statement"],
    "properties": {
        "Version": {"enum": ["2012-10-17", "2008-10-17"]},
        "Id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "Statement": {"anyOf": [{"type": "array", "items": _STATEMENT_SCHEMA}, _STATEMENT_SCHEMA]},
    },
    "description": "An IAM-style registry policy (see the README's Registry policy section).",
}

# ECR's lifecycle policy grammar as far as a schema can say it; lifecycle/policy_rules.py
# checks the rest (which keys go together, unique priorities) and names the rule at fault.
LIFECYCLE_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "rules": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["rulePriority", "selection", "action"],
                "properties": {
                    "rulePriority": {"type": "integer", "minimum": 1},
                    "description": {"type": "string"},
                    "selection": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tagStatus", "countType", "countNumber"],
                        "properties": {
                            "tagStatus": {"enum": ["tagged", "untagged", "any"]},
                            "tagPatternList": _NON_EMPTY_STRINGS,
                            "tagPrefixList": _NON_EMPTY_STRINGS,
                            "storageClass": {"const": "standard"},
                            "countType": {
                                "enum": [
                                    "imageCountMoreThan",
                                    "sinceImagePushed",
                                    "sinceImagePulled",
                                ]
                            },
                            "countUnit": {"const": "days"},
                            "countNumber": {"type": "integer", "minimum": 1},
                        },
                    },
                    "action": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type"],
                        "properties": {"type": {"const": "expire"}},
                    },
                },
            },
        }
    },
    "description": "An Amazon ECR lifecycle policy, as a JSON object (not text).",
}


def _lifecycle_policy(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("a lifecycle policy is a JSON object with a list of rules, or null")
    try:
        LifecyclePolicy.parse(value)
    except LifecyclePolicyError as exc:
        raise ValueError(str(exc)) from None
    length = len(json.dumps(value))
    if length > MAX_DOCUMENT_CHARS:
        raise ValueError(
            f"the lifecycle policy is {length} characters long; ECR allows at most "
            f"{MAX_DOCUMENT_CHARS}"
        )
    return value


LifecyclePolicyInput = Annotated[
    Mapping[str, Any] | None,
    PlainValidator(_lifecycle_policy),
    WithJsonSchema({"anyOf": [LIFECYCLE_POLICY_SCHEMA, {"type": "null"}]}),
]
