"""Resources as comparable field maps, and the field-level difference between two of them.

The file and the server describe a resource in different words (`5m` against 300.0, a lifecycle
policy's keys in any order, a policy without `Version`); both sides go through the same
normal form here, so an `apply` followed by a `plan` finds nothing to change.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError
from pullthrough.config import RuleConfig
from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicy, LifecyclePolicyError
from pullthrough.metadata.template_names import PULL_THROUGH_CACHE


class _Absent:
    """A key one side of a comparison does not have (distinct from a null value)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()

Fields = dict[str, Any]


@dataclass(frozen=True)
class FieldChange:
    """One leaf that differs: `path` is dotted, with `[i]` for list items
    (`lifecycle_policy.rules[0].selection.countNumber`); `old`/`new` may be ABSENT."""

    path: str
    old: Any
    new: Any


def rule_fields(rule: RuleConfig) -> Fields:
    """Every field of a rule, defaults filled, durations in seconds."""
    return rule.model_dump(mode="json")


def rule_from_api(rule: Mapping[str, Any]) -> RuleConfig:
    """A rule as the server lists it (with cache_prefix_url, timestamps…) as a RuleConfig."""
    known = {k: v for k, v in rule.items() if k in RuleConfig.model_fields}
    return RuleConfig.model_validate(known)


def lifecycle_fields(policy: Any) -> Any:
    """A lifecycle policy (JSON text or object) in its normal form; None stays None."""
    if policy is None:
        return None
    return LifecyclePolicy.parse(policy).to_json()


def template_fields(
    prefix: str,
    *,
    description: str | None = None,
    applied_for: Iterable[str] = (PULL_THROUGH_CACHE,),
    lifecycle_policy: Any = None,
    scan_on_pull: bool = False,
) -> Fields:
    return {
        "prefix": prefix,
        "description": description,
        # ECR treats appliedFor as a set.
        "applied_for": sorted(set(applied_for)),
        "lifecycle_policy": lifecycle_policy,
        "scan_on_pull": scan_on_pull,
    }


def template_from_api(template: Mapping[str, Any]) -> Fields:
    policy = template.get("lifecycle_policy")
    # One this client cannot read is compared as stored: the file's valid policy replaces it.
    with contextlib.suppress(LifecyclePolicyError):
        policy = lifecycle_fields(policy)
    return template_fields(
        str(template["prefix"]),
        description=template.get("description"),
        applied_for=template.get("applied_for") or (PULL_THROUGH_CACHE,),
        lifecycle_policy=policy,
        scan_on_pull=bool(template.get("scan_on_pull", False)),
    )


def policy_fields(document: Any) -> Any:
    """A registry policy (JSON text or object) in its normal form: Version filled in, lists
    where IAM allows a string or a list. None (the built-in default applies) stays None."""
    if document is None:
        return None
    if isinstance(document, str):
        document = json.loads(document)
    try:
        return PolicyDocument.parse(document).to_json()
    except PolicyError:
        return document  # compared as stored: the file's valid policy replaces it


def scanning_fields(configuration: Mapping[str, Any]) -> Fields:
    return {
        "scan_type": configuration.get("scan_type", "BASIC"),
        "rules": [
            {
                "scan_frequency": rule.get("scan_frequency"),
                "repository_filters": [
                    {"filter": f.get("filter"), "filter_type": f.get("filter_type", "WILDCARD")}
                    for f in rule.get("repository_filters") or []
                ],
            }
            for rule in configuration.get("rules") or []
        ],
        "gates": [
            {
                "repository_filters": [
                    {"filter": f.get("filter"), "filter_type": f.get("filter_type", "WILDCARD")}
                    for f in gate.get("repository_filters") or []
                ],
                "block_severity": gate.get("block_severity"),
                "allowed": list(gate.get("allowed") or []),
                "only_fixable": bool(gate.get("only_fixable", False)),
            }
            for gate in configuration.get("gates") or []
        ],
        "gate_wait_seconds": float(configuration.get("gate_wait_seconds", 30.0)),
    }


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """The leaves of a JSON value by path. Objects and lists of objects are walked; scalars and
    lists of scalars are leaves (an Action list reads better whole than item by item)."""
    if isinstance(value, Mapping) and (value or not path):
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            leaves.update(flatten(item, f"{path}.{key}" if path else str(key)))
        return leaves
    if isinstance(value, list) and value and all(isinstance(i, Mapping) for i in value):
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(flatten(item, f"{path}[{index}]"))
        return leaves
    return {path: value}


def field_changes(old: Fields, new: Fields) -> tuple[FieldChange, ...]:
    """Exactly the leaves that differ, in the new value's order, then what only the old had."""
    before, after = flatten(old), flatten(new)
    changes = [
        FieldChange(path, before.get(path, ABSENT), value)
        for path, value in after.items()
        if before.get(path, ABSENT) != value
    ]
    changes += [
        FieldChange(path, value, ABSENT) for path, value in before.items() if path not in after
    ]
    # An empty list that fills up (or the reverse) is told by its new (or old) items alone.
    return tuple(c for c in changes if not _emptied_container(c, before, after))


def _emptied_container(change: FieldChange, before: Fields, after: Fields) -> bool:
    if change.new is ABSENT and change.old in ([], {}):
        other = after
    elif change.old is ABSENT and change.new in ([], {}):
        other = before
    else:
        return False
    return any(path.startswith((f"{change.path}[", f"{change.path}.")) for path in other)
