"""The plumbing of lifecycle policy documents: the error type, where in the document an error
is, and checks on decoded JSON values that name the offending field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pullthrough import jsondoc
from pullthrough.jsondoc import json_type

# ECR service quota: "Lifecycle policy length: 30,720" characters.
MAX_DOCUMENT_CHARS = 30_720


class LifecyclePolicyError(ValueError):
    """A lifecycle policy that cannot be used. The message names the rule (its index in the
    document, from 0, and its rulePriority when that was readable) and the field:

        rules[1] (rulePriority 2): selection.tagPrefixList is required when tagStatus is
        "tagged" (or give tagPatternList)

    `rule_priority` and `field` are None for errors about the whole document (bad JSON, no
    `rules`)."""

    def __init__(
        self, message: str, *, rule_priority: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.rule_priority = rule_priority
        self.field = field


@dataclass(frozen=True, slots=True)
class RuleAt:
    """The rule an error is about, for its message."""

    index: int
    priority: int | None = None

    def error(self, field: str, problem: str) -> LifecyclePolicyError:
        return LifecyclePolicyError(
            f"{self}: {field} {problem}", rule_priority=self.priority, field=field
        )

    def __str__(self) -> str:
        if self.priority is None:
            return f"rules[{self.index}]"
        return f"rules[{self.index}] (rulePriority {self.priority})"


def load_json(document: str | bytes) -> Any:
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
    except UnicodeDecodeError as exc:
        raise LifecyclePolicyError(f"the lifecycle policy is not UTF-8 text: {exc}") from None
    if len(text) > MAX_DOCUMENT_CHARS:
        raise LifecyclePolicyError(
            f"the lifecycle policy is {len(text)} characters long; "
            f"ECR allows at most {MAX_DOCUMENT_CHARS}"
        )
    try:
        return jsondoc.loads(text)
    except ValueError as exc:  # JSONDecodeError, and NaN/Infinity
        raise LifecyclePolicyError(f"the lifecycle policy is not valid JSON: {exc}") from None


def json_object(
    value: Any, name: str, where: RuleAt | None, *, field_prefix: str
) -> Mapping[str, Any]:
    """`value` as a JSON object whose keys each appear once. `name` is how a message calls it
    ("selection"); `field_prefix` is what its keys' field names start with ("selection.")."""
    if not isinstance(value, Mapping):
        field = name if where is not None else None
        raise _error(where, name, f"must be a JSON object, not {json_type(value)}", field)
    duplicates = jsondoc.duplicate_keys(value)
    if duplicates:
        problem = f"has the field {json.dumps(duplicates[0])} more than once"
        raise _error(where, name, problem, f"{field_prefix}{duplicates[0]}")
    return value


def known_keys(
    obj: Mapping[str, Any],
    known: tuple[str, ...],
    name: str,
    where: RuleAt | None,
    *,
    field_prefix: str,
) -> None:
    """Reject fields the grammar does not have (ECR rejects them too)."""
    for key in obj:
        if key not in known:
            problem = f"has an unknown field {json.dumps(key)} (known: {', '.join(known)})"
            raise _error(where, name, problem, f"{field_prefix}{key}")


def _error(
    where: RuleAt | None, name: str, problem: str, field: str | None
) -> LifecyclePolicyError:
    if where is None:
        return LifecyclePolicyError(f"{name} {problem}", field=field)
    return LifecyclePolicyError(
        f"{where}: {name} {problem}", rule_priority=where.priority, field=field
    )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_value(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json_type(value)
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)
