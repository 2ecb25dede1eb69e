"""A statement's `Condition` block: string operators over the requesting principal's attributes.

`{"StringEquals": {"pullthrough:PrincipalOrg": "acme"}}` holds when the principal's org is
`acme`. All clauses must hold (operators and keys are ANDed); a clause holds when any of its
values matches. Keys and operators are matched case-insensitively, as in IAM.

Missing attributes follow IAM: a principal without an org never satisfies StringEquals or
StringLike on it, and always satisfies StringNotEquals and StringNotLike. For the multi-valued
`pullthrough:PrincipalGroups`:
- `ForAnyValue:Op` holds when at least one of the principal's groups satisfies Op; never for a
  principal without groups.
- `ForAllValues:Op` holds when every group satisfies Op, and, as in IAM, for a principal without
  groups (pair it with a positive check when that matters).
- Without a prefix, StringEquals/StringLike mean "in any of these groups" and StringNotEquals/
  StringNotLike mean "in none of these groups", which is what such a policy usually intends.
Prefixes on single-valued keys treat the value as a set of one (empty when missing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pullthrough.access.registry_policy.grammar import (
    PolicyError,
    compile_wildcard,
    json_object,
    string_list,
)

PRINCIPAL_ORG = "pullthrough:PrincipalOrg"
PRINCIPAL_GROUPS = "pullthrough:PrincipalGroups"
PRINCIPAL_NAME = "pullthrough:PrincipalName"
PRINCIPAL_TYPE = "pullthrough:PrincipalType"

# The request's attributes: canonical key -> values; empty when the principal lacks it.
ConditionContext = Mapping[str, tuple[str, ...]]

_KEYS = {
    key.lower(): key for key in (PRINCIPAL_ORG, PRINCIPAL_GROUPS, PRINCIPAL_NAME, PRINCIPAL_TYPE)
}
_KEYS["aws:principalorgid"] = PRINCIPAL_ORG  # what ECR policies scope an organisation with

Operator = Literal["StringEquals", "StringNotEquals", "StringLike", "StringNotLike"]
SetQualifier = Literal["ForAnyValue", "ForAllValues"]
_OPERATORS: dict[str, Operator] = {
    "stringequals": "StringEquals",
    "stringnotequals": "StringNotEquals",
    "stringlike": "StringLike",
    "stringnotlike": "StringNotLike",
}
_QUALIFIERS: dict[str, SetQualifier] = {
    "foranyvalue": "ForAnyValue",
    "forallvalues": "ForAllValues",
}
_KNOWN_OPERATORS = "StringEquals, StringNotEquals, StringLike, StringNotLike"
_KNOWN_KEYS = ", ".join(
    [PRINCIPAL_ORG, PRINCIPAL_GROUPS, PRINCIPAL_NAME, PRINCIPAL_TYPE, "aws:PrincipalOrgID"]
)


@dataclass(frozen=True)
class ConditionClause:
    """One `operator: {key: values}` pair of a Condition block."""

    operator: str  # as written, e.g. "ForAnyValue:StringLike"
    key: str  # as written, e.g. "aws:PrincipalOrgID"
    values: tuple[str, ...]
    base: Operator
    qualifier: SetQualifier | None
    attribute: str  # the canonical key the context is looked up by
    # compiled StringLike/StringNotLike values; empty for the Equals operators
    patterns: tuple[re.Pattern[str], ...] = field(compare=False, repr=False, default=())

    @property
    def negated(self) -> bool:
        return self.base in ("StringNotEquals", "StringNotLike")

    def _matches(self, value: str) -> bool:
        """Whether `value` equals (or is like) one of the clause's values, before negation."""
        if self.patterns:
            return any(pattern.fullmatch(value) for pattern in self.patterns)
        return value in self.values

    def holds(self, context: ConditionContext) -> bool:
        present = context.get(self.attribute, ())
        if self.qualifier == "ForAnyValue":
            return any(self._matches(value) != self.negated for value in present)
        if self.qualifier == "ForAllValues":
            return all(self._matches(value) != self.negated for value in present)
        if not present:
            return self.negated
        return any(self._matches(value) for value in present) != self.negated


def parse_condition(block: Any) -> tuple[ConditionClause, ...]:
    clauses: list[ConditionClause] = []
    for operator, keys in json_object(block, "Condition").items():
        qualifier, base = _parse_operator(operator)
        where = f"Condition {operator}"
        keys = json_object(keys, where)
        if not keys:
            raise PolicyError(f"{where} has no condition keys")
        for key, raw_values in keys.items():
            attribute = _KEYS.get(key.lower())
            if attribute is None:
                raise PolicyError(
                    f'{where}: "{key}" is not a known condition key (known: {_KNOWN_KEYS})'
                )
            values = string_list(raw_values, f'{where} "{key}"')
            like = base in ("StringLike", "StringNotLike")
            clauses.append(
                ConditionClause(
                    operator=operator,
                    key=key,
                    values=values,
                    base=base,
                    qualifier=qualifier,
                    attribute=attribute,
                    patterns=tuple(compile_wildcard(v) for v in values) if like else (),
                )
            )
    return tuple(clauses)


def _parse_operator(operator: str) -> tuple[SetQualifier | None, Operator]:
    prefix, sep, name = operator.rpartition(":")
    qualifier = _QUALIFIERS.get(prefix.lower()) if sep else None
    base = _OPERATORS.get(name.lower())
    if (sep and qualifier is None) or base is None:
        raise PolicyError(
            f'Condition operator "{operator}" is not supported (known: {_KNOWN_OPERATORS}, '
            "optionally prefixed with ForAnyValue: or ForAllValues:)"
        )
    return qualifier, base


def condition_to_json(clauses: tuple[ConditionClause, ...]) -> dict[str, dict[str, list[str]]]:
    block: dict[str, dict[str, list[str]]] = {}
    for clause in clauses:
        block.setdefault(clause.operator, {})[clause.key] = list(clause.values)
    return block
