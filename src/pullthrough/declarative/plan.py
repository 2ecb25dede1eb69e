"""The difference between a declarative file and the server: per resource, create, update (with
the fields that change), delete or nothing.

Ownership: a section the file leaves out is not looked at; a section it gives owns that kind of
resource, so what the server has and the file does not is deleted (`rules: []` deletes every
rule). Secrets are compared by the server (`POST /secret-checks`): no value is read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pullthrough.access.registry_policy.document import ADMIN, PolicyDocument
from pullthrough.declarative.document import Declaration, SecretValue
from pullthrough.declarative.fields import (
    FieldChange,
    Fields,
    field_changes,
    rule_fields,
    scanning_fields,
)
from pullthrough.declarative.state import SecretChecks, ServerState
from pullthrough.upstream.credentials import EnvCredentialSource

ResourceType = Literal["secret", "rule", "template", "scanning", "registry_policy"]
Action = Literal["create", "update", "delete", "no-op"]
# The order resources are shown in, and the order of the file's sections in the README.
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    "secret",
    "rule",
    "template",
    "scanning",
    "registry_policy",
)
_SECTION_OF: dict[ResourceType, str] = {
    "secret": "secrets",
    "rule": "rules",
    "template": "templates",
    "scanning": "scanning",
    "registry_policy": "registry_policy",
}
_DEFAULT_SCANNING = scanning_fields({})


@dataclass(frozen=True)
class ResourceChange:
    """What happens to one resource. `before`/`after` are normal forms (None when the resource
    is missing on that side); a secret's are None, and its value rides in `secret`, unshown."""

    type: ResourceType
    name: str | None  # None for the registry-wide singletons (scanning, registry_policy)
    action: Action
    fields: tuple[FieldChange, ...] = ()
    before: Fields | None = None
    after: Fields | None = None
    secret: SecretValue | None = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        """How the plan names it: `rule "docker-hub"`, `registry_policy`."""
        return self.type if self.name is None else f'{self.type} "{self.name}"'


@dataclass(frozen=True)
class Plan:
    source: str
    changes: tuple[ResourceChange, ...]  # every resource the file owns, no-ops included
    warnings: tuple[str, ...] = ()

    @property
    def pending(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.action != "no-op")

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)


def compute_plan(declaration: Declaration, state: ServerState, checks: SecretChecks) -> Plan:
    """What applying `declaration` to a server in `state` changes."""
    owned = declaration.sections
    changes: list[ResourceChange] = []
    if "secrets" in owned:
        changes += _secrets(declaration, state, checks)
    if "rules" in owned:
        before = {prefix: rule_fields(rule) for prefix, rule in state.rules.items()}
        after = {prefix: rule_fields(rule) for prefix, rule in declaration.rules.items()}
        changes += _keyed("rule", before, after)
    if "templates" in owned:
        changes += _keyed("template", state.templates, declaration.templates)
    if "scanning" in owned:
        assert declaration.scanning is not None
        current = state.scanning if state.scanning is not None else _DEFAULT_SCANNING
        changes.append(_compare("scanning", None, current, declaration.scanning))
    if "registry_policy" in owned:
        changes.append(
            _compare("registry_policy", None, state.registry_policy, declaration.registry_policy)
        )
    order = {kind: i for i, kind in enumerate(RESOURCE_TYPES)}
    changes.sort(key=lambda c: (order[c.type], c.name or ""))
    return Plan(declaration.source, tuple(changes), tuple(_warnings(declaration, state, changes)))


def _secrets(
    declaration: Declaration, state: ServerState, checks: SecretChecks
) -> Iterator[ResourceChange]:
    for name, value in declaration.secrets.items():
        if name not in state.secrets:
            yield ResourceChange("secret", name, "create", secret=value)
        elif checks(name, value):
            yield ResourceChange("secret", name, "no-op")
        else:
            yield ResourceChange("secret", name, "update", secret=value)
    for name in state.secrets - declaration.secrets.keys():
        yield ResourceChange("secret", name, "delete")


def _keyed(
    kind: ResourceType, before: dict[str, Fields], after: dict[str, Fields]
) -> Iterator[ResourceChange]:
    for name in sorted(before.keys() | after.keys()):
        yield _compare(kind, name, before.get(name), after.get(name))


def _compare(
    kind: ResourceType, name: str | None, before: Fields | None, after: Fields | None
) -> ResourceChange:
    if before is None and after is None:
        return ResourceChange(kind, name, "no-op")
    if before is None:
        assert after is not None
        shown = tuple(c for c in field_changes({}, after) if c.new is not None)
        return ResourceChange(kind, name, "create", shown, None, after)
    if after is None:
        gone = tuple(c for c in field_changes(before, {}) if c.old is not None)
        return ResourceChange(kind, name, "delete", gone, before, None)
    changed = field_changes(before, after)
    return ResourceChange(kind, name, "update" if changed else "no-op", changed, before, after)


def _warnings(
    declaration: Declaration, state: ServerState, changes: list[ResourceChange]
) -> Iterator[str]:
    """What the plan allows but the operator probably did not mean."""
    deleted_secrets = {c.name for c in changes if c.type == "secret" and c.action == "delete"}
    rules = declaration.rules if "rules" in declaration.sections else state.rules
    for prefix, rule in sorted(rules.items()):
        if rule.credential is None:
            continue
        if rule.credential in deleted_secrets:
            yield (
                f'rule "{prefix}" names secret "{rule.credential}", which this plan deletes: '
                "its pulls from upstream will fail until the secret is stored again"
            )
        elif (
            "secrets" not in declaration.sections
            and "secrets" in state.read
            and rule.credential not in state.secrets
        ):
            username_variable, _ = EnvCredentialSource.variable_names(rule.credential)
            yield (
                f'rule "{prefix}" names secret "{rule.credential}", which the server does not '
                "store: add it under secrets: or with `pullthrough secrets put`, or the server "
                f"refuses the rule (unless its environment sets {username_variable} and its "
                "_PASSWORD twin)"
            )
    policy = declaration.registry_policy
    owned = "registry_policy" in declaration.sections
    if owned and policy is not None and not _grants_admin(policy):
        yield (
            f'no statement of the registry policy allows "{ADMIN}" on Resource "*": with '
            "auth on, nobody could use the admin API (or plan and apply) after this apply"
        )


def _grants_admin(policy: dict[str, Any]) -> bool:
    document = PolicyDocument.parse(policy)
    return any(
        s.effect == "Allow" and ADMIN in s.actions and s.covers_registry
        for s in document.statements
    )
