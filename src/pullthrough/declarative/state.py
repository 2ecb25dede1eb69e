"""What the server holds now, read through the admin API, in the same normal form as the file.

Only the sections a plan needs are read, so a file without `scanning:` works against a server
whatever its scanning endpoint says. Secret values never come back: `SecretChecks` asks the
server whether a stored secret equals a value (`POST /secret-checks`) instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pullthrough.config import RuleConfig
from pullthrough.declarative.document import SecretValue
from pullthrough.declarative.fields import (
    Fields,
    policy_fields,
    rule_from_api,
    scanning_fields,
    template_from_api,
)


class AdminApi(Protocol):
    """The calls a plan and an apply make (`pullthrough.client.admin.AdminClient` has them)."""

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def put(self, path: str, json: Any) -> Any: ...

    def post(self, path: str, json: Any) -> Any: ...

    def delete(self, path: str) -> Any: ...


@dataclass(frozen=True)
class ServerState:
    """The resources of the sections in `read`; the others are empty and mean nothing."""

    read: frozenset[str]
    rules: dict[str, RuleConfig] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()
    templates: dict[str, Fields] = field(default_factory=dict)
    registry_policy: Fields | None = None  # None: no stored policy, the default applies
    scanning: Fields | None = None


def read_state(api: AdminApi, sections: Collection[str]) -> ServerState:
    """The server's resources of `sections` (names as in the file: rules, secrets, …)."""
    wanted = frozenset(sections)
    rules: dict[str, RuleConfig] = {}
    if "rules" in wanted:
        for rule in api.get("/rules")["rules"]:
            parsed = rule_from_api(rule)
            rules[parsed.prefix] = parsed
    secrets: frozenset[str] = frozenset()
    if "secrets" in wanted:
        secrets = frozenset(str(s["name"]) for s in api.get("/secrets")["secrets"])
    templates: dict[str, Fields] = {}
    if "templates" in wanted:
        for template in api.get("/templates")["templates"]:
            templates[str(template["prefix"])] = template_from_api(template)
    policy: Fields | None = None
    if "registry_policy" in wanted:
        policy = policy_fields(api.get("/registry-policy").get("policy"))
    scanning: Fields | None = None
    if "scanning" in wanted:
        scanning = scanning_fields(api.get("/scanning"))
    return ServerState(wanted, rules, secrets, templates, policy, scanning)


class SecretChecks(Protocol):
    def __call__(self, name: str, value: SecretValue) -> bool:
        """Whether the server's secret `name` holds exactly `value`."""
        ...


def server_secret_checks(api: AdminApi) -> SecretChecks:
    def matches(name: str, value: SecretValue) -> bool:
        answer = api.post("/secret-checks", {"name": name, **value.to_api()})
        return bool(answer["matches"])

    return matches
