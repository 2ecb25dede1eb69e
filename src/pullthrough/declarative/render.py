"""How a plan reads: Terraform-like text for people, one JSON document for scripts.

    + rule "docker-hub"
        upstream: "https://registry-1.docker.io"
    ~ template "ROOT"
        lifecycle_policy.rules[0].selection.countNumber: 7 -> 14
    - rule "ghcr"

    Plan: 1 to add, 1 to change, 1 to destroy.

Secrets appear by name only, `(value hidden)`: a plan has no values to show.
"""

from __future__ import annotations

import json
from typing import Any

from pullthrough.declarative.fields import ABSENT, FieldChange
from pullthrough.declarative.plan import Plan, ResourceChange

_SYMBOLS = {"create": "+", "update": "~", "delete": "-"}
_HIDDEN = "(value hidden)"


def render_text(plan: Plan, server: str) -> str:
    lines: list[str] = []
    pending = plan.pending
    if pending:
        lines += [f"pullthrough will change {server} to match {plan.source}:", ""]
        for change in pending:
            lines += _resource_lines(change)
            lines.append("")
    lines += [f"Warning: {warning}" for warning in plan.warnings]
    if plan.warnings:
        lines.append("")
    if pending:
        lines.append(
            f"Plan: {plan.count('create')} to add, {plan.count('update')} to change, "
            f"{plan.count('delete')} to destroy."
        )
    else:
        lines.append(f"No changes. The server matches {plan.source}.")
    return "\n".join(lines) + "\n"


def _resource_lines(change: ResourceChange) -> list[str]:
    header = f"  {_SYMBOLS[change.action]} {change.address}"
    if change.type == "secret" and change.action != "delete":
        return [f"{header} {_HIDDEN}"]
    if change.action == "delete":
        if change.type == "registry_policy":
            return [f"{header} (the built-in default policy applies again)"]
        return [header]
    if change.action == "create":
        return [header] + [f"      {c.path}: {format_value(c.new)}" for c in change.fields]
    return [header] + [
        f"      {c.path}: {format_value(c.old)} -> {format_value(c.new)}" for c in change.fields
    ]


def format_value(value: Any) -> str:
    """JSON spelling (strings quoted, null, true), whole numbers without `.0`."""
    if value is ABSENT:
        return "(none)"
    return json.dumps(_plain(value), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def plan_document(plan: Plan, server: str) -> dict[str, Any]:
    """`plan --output json`: every resource the file owns, no-ops included."""
    return {
        "file": plan.source,
        "server": server,
        "pending": bool(plan.pending),
        "summary": {
            "add": plan.count("create"),
            "change": plan.count("update"),
            "destroy": plan.count("delete"),
        },
        "changes": [_change_document(change) for change in plan.changes],
        "warnings": list(plan.warnings),
    }


def _change_document(change: ResourceChange) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": change.type,
        "name": change.name,
        "address": change.address,
        "action": change.action,
        "fields": [_field_document(c) for c in change.fields],
    }
    if change.type == "secret":
        document["value_hidden"] = True
    return document


def _field_document(change: FieldChange) -> dict[str, Any]:
    # A field one side lacks is null here; text output says "(none)".
    return {
        "field": change.path,
        "old": None if change.old is ABSENT else _plain(change.old),
        "new": None if change.new is ABSENT else _plain(change.new),
    }
