"""The registry policy: an IAM-style JSON document saying who may pull, import from upstream,
list or administer which repositories, and how a request is decided against it.

    {"Version": "2012-10-17",
     "Statement": [{"Sid": "AcmePulls", "Effect": "Allow",
                    "Principal": {"Group": ["acme-*"]},
                    "Action": ["registry:Pull", "ecr:BatchImportUpstreamImage"],
                    "Resource": "repository/docker-hub/*",
                    "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme"}}}]}

A request is denied if any matching statement denies it (explicit deny wins), else allowed if
any matching statement allows it, else denied: nothing is allowed unless a statement says so.
Resources are `*`, `repository/<pattern>` or ECR's `arn:aws:ecr:<region>:<account>:repository/
<pattern>` (region and account are ignored: there is one registry). Actions: `actions`;
principals: `principals`; conditions: `conditions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pullthrough.access.registry_policy.actions import (
    ACTIONS,
    ADMIN,
    ECR_ALIASES,
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    resolve_action,
)
from pullthrough.access.registry_policy.conditions import (
    PRINCIPAL_GROUPS,
    PRINCIPAL_NAME,
    PRINCIPAL_ORG,
    PRINCIPAL_TYPE,
    ConditionClause,
    ConditionContext,
    condition_to_json,
    parse_condition,
)
from pullthrough.access.registry_policy.grammar import (
    PolicyError,
    compile_wildcard,
    json_object,
    load_json,
    string_list,
)
from pullthrough.access.registry_policy.principals import ANONYMOUS, Principal, PrincipalSelector
from pullthrough.jsondoc import json_type

__all__ = [
    "ACTIONS",
    "ADMIN",
    "ANONYMOUS",
    "ECR_ALIASES",
    "IMPORT_UPSTREAM",
    "LIST_REPOSITORIES",
    "PULL",
    "REGISTRY_WIDE",
    "Decision",
    "PolicyDocument",
    "PolicyError",
    "PolicyStatement",
    "Principal",
]

# The repository to evaluate registry-wide requests against (the catalog, administration).
# Only statements whose Resource covers every repository (`*`, `repository/*`) match it, so
# `repository/docker-hub/*` cannot grant a look at the whole catalog.
REGISTRY_WIDE = "*"

VERSIONS = ("2012-10-17", "2008-10-17")
_DOCUMENT_KEYS = ("Version", "Id", "Statement")
_STATEMENT_KEYS = ("Sid", "Effect", "Principal", "Action", "NotAction", "Resource", "Condition")
_UNSUPPORTED = {
    "NotPrincipal": 'name the principals in "Principal" instead',
    "NotResource": 'list the repositories in "Resource" instead',
}
_ECR_ARN = re.compile(r"arn:[^:]+:ecr:[^:]*:[^:]*:(?P<resource>.*)", re.DOTALL)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Literal["allowed", "explicit-deny", "no-allow"]
    statement: str | None  # the Sid (or "Statement[i]") that decided, when one did

    def explain(self, principal: Principal, action: str, repository: str) -> str:
        """One sentence for the user, e.g. `principal "ci" (org acme) may not
        registry:ImportUpstream on repository/docker-hub/library/nginx: no statement allows it`."""
        target = "the whole registry" if repository == REGISTRY_WIDE else f"repository/{repository}"
        if self.allowed:
            return (
                f"{principal.describe()} may {action} on {target}: "
                f'allowed by statement "{self.statement}"'
            )
        refusal = f"{principal.describe()} may not {action} on {target}"
        if self.reason == "explicit-deny":
            return f'{refusal}: denied by statement "{self.statement}"'
        if repository == REGISTRY_WIDE:
            return f'{refusal}: no statement with Resource "*" allows it'
        return f"{refusal}: no statement allows it"


@dataclass(frozen=True)
class PolicyStatement:
    index: int
    sid: str | None
    effect: Literal["Allow", "Deny"]
    principal: PrincipalSelector | None  # None: every authenticated principal
    action_field: Literal["Action", "NotAction"]
    action_entries: tuple[str, ...]  # as written
    actions: frozenset[str]  # what the entries resolve to (the complement, for NotAction)
    resources: tuple[str, ...]  # as written
    conditions: tuple[ConditionClause, ...]
    repository_patterns: tuple[re.Pattern[str], ...] = field(compare=False, repr=False)
    covers_registry: bool = field(compare=False, repr=False)  # some Resource is `*`-only

    @property
    def label(self) -> str:
        return self.sid if self.sid is not None else f"Statement[{self.index}]"

    def applies(
        self, principal: Principal, action: str, repository: str, context: ConditionContext
    ) -> bool:
        if action not in self.actions:
            return False
        if repository == REGISTRY_WIDE:
            if not self.covers_registry:
                return False
        elif not any(pattern.fullmatch(repository) for pattern in self.repository_patterns):
            return False
        if self.principal is None:
            if not principal.authenticated:
                return False
        elif not self.principal.matches(principal):
            return False
        return all(clause.holds(context) for clause in self.conditions)

    @classmethod
    def parse(cls, index: int, value: Any) -> PolicyStatement:
        sid: str | None = None
        try:
            if isinstance(value, Mapping):  # first, so every later error can name the Sid
                sid = _parse_sid(value.get("Sid"))
            return cls._parse(index, sid, json_object(value, "the statement"))
        except PolicyError as exc:
            raise exc.at(index, sid) from None

    @classmethod
    def _parse(cls, index: int, sid: str | None, body: Mapping[str, Any]) -> PolicyStatement:
        for key in body:
            if key in _UNSUPPORTED:
                raise PolicyError(f"{key} is not supported: {_UNSUPPORTED[key]}")
            if key not in _STATEMENT_KEYS:
                raise PolicyError(f'unknown field "{key}" (known: {", ".join(_STATEMENT_KEYS)})')
        effect = body.get("Effect")
        if effect not in ("Allow", "Deny"):
            shown = "is missing" if effect is None else f'"{effect}" is not valid'
            raise PolicyError(f'Effect {shown}: use "Allow" or "Deny"')
        action_field: Literal["Action", "NotAction"]
        if "Action" in body and "NotAction" in body:
            raise PolicyError("give Action or NotAction, not both")
        if "Action" in body:
            action_field = "Action"
        elif "NotAction" in body:
            action_field = "NotAction"
        else:
            raise PolicyError('Action is missing: name actions such as "registry:Pull"')
        entries = string_list(body[action_field], action_field)
        named = frozenset().union(*(resolve_action(e, action_field) for e in entries))
        if "Resource" not in body:
            raise PolicyError(
                'Resource is missing: use "*" for every repository, or "repository/<pattern>"'
            )
        resources = string_list(body["Resource"], "Resource")
        patterns = tuple(_repository_pattern(resource) for resource in resources)
        return cls(
            index=index,
            sid=sid,
            effect=effect,
            principal=PrincipalSelector.parse(body["Principal"]) if "Principal" in body else None,
            action_field=action_field,
            action_entries=entries,
            actions=named if action_field == "Action" else ACTIONS - named,
            resources=resources,
            conditions=parse_condition(body["Condition"]) if "Condition" in body else (),
            repository_patterns=tuple(compile_wildcard(pattern) for pattern in patterns),
            covers_registry=any(set(pattern) == {"*"} for pattern in patterns),
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.sid is not None:
            document["Sid"] = self.sid
        document["Effect"] = self.effect
        if self.principal is not None:
            document["Principal"] = self.principal.to_json()
        document[self.action_field] = list(self.action_entries)
        document["Resource"] = list(self.resources)
        if self.conditions:
            document["Condition"] = condition_to_json(self.conditions)
        return document


def _parse_sid(sid: Any) -> str | None:
    if sid is None:
        return None
    if not isinstance(sid, str) or not sid:
        raise PolicyError(f"Sid must be a non-empty string, not {json_type(sid)}")
    return sid


def _repository_pattern(resource: str) -> str:
    """The repository-name pattern a Resource entry stands for; `*` for every repository."""
    arn = _ECR_ARN.fullmatch(resource)
    rest = arn["resource"] if arn else resource
    if rest == "*":
        return "*"
    kind, sep, pattern = rest.partition("/")
    if kind == "repository" and sep and pattern:
        return pattern
    raise PolicyError(
        f'Resource "{resource}" is not a repository: use "*", "repository/<pattern>" such as '
        '"repository/docker-hub/*", or an ECR repository ARN'
    )


@dataclass(frozen=True)
class PolicyDocument:
    version: str
    statements: tuple[PolicyStatement, ...]
    id: str | None = None

    @classmethod
    def parse(cls, document: str | bytes | Mapping[str, Any]) -> PolicyDocument:
        """Validate a policy document (JSON text or decoded); raise PolicyError naming the
        offending statement and field."""
        raw = load_json(document) if isinstance(document, str | bytes) else document
        body = json_object(raw, "the policy")
        for key in body:
            if key not in _DOCUMENT_KEYS:
                raise PolicyError(
                    f'the policy has the unknown field "{key}" (known: {", ".join(_DOCUMENT_KEYS)})'
                )
        version = body.get("Version", VERSIONS[0])
        if not isinstance(version, str):
            raise PolicyError(f"Version must be a string, not {json_type(version)}")
        if version not in VERSIONS:
            raise PolicyError(f'Version "{version}" is not supported: use "{VERSIONS[0]}"')
        policy_id = body.get("Id")
        if policy_id is not None and not isinstance(policy_id, str):
            raise PolicyError(f"Id must be a string, not {json_type(policy_id)}")
        if "Statement" not in body:
            raise PolicyError("the policy has no Statement")
        listed = body["Statement"]
        if isinstance(listed, Mapping):
            listed = [listed]
        elif not isinstance(listed, list | tuple):
            raise PolicyError(
                f"Statement must be a list of statements or one statement, not {json_type(listed)}"
            )
        statements = tuple(PolicyStatement.parse(i, value) for i, value in enumerate(listed))
        first_use: dict[str, int] = {}
        for statement in statements:
            if statement.sid is None:
                continue
            if statement.sid in first_use:
                raise PolicyError(
                    f'Sid "{statement.sid}" is already used by '
                    f"Statement[{first_use[statement.sid]}]",
                    statement=statement.index,
                    sid=statement.sid,
                )
            first_use[statement.sid] = statement.index
        return cls(version=version, statements=statements, id=policy_id)

    def evaluate(self, principal: Principal, action: str, repository: str) -> Decision:
        """Decide `action` (one of ACTIONS) on `repository`, a local name such as
        `docker-hub/library/nginx` (its resource is `repository/<name>`), or REGISTRY_WIDE."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {sorted(ACTIONS)}")
        context = _context(principal)
        allowed_by: PolicyStatement | None = None
        for statement in self.statements:
            if not statement.applies(principal, action, repository, context):
                continue
            if statement.effect == "Deny":
                return Decision(False, "explicit-deny", statement.label)
            allowed_by = allowed_by or statement
        if allowed_by is not None:
            return Decision(True, "allowed", allowed_by.label)
        return Decision(False, "no-allow", None)

    def allowed_actions(self, principal: Principal, repository: str) -> frozenset[str]:
        """The actions `principal` may take on `repository`, for trimming token scopes."""
        return frozenset(
            action for action in ACTIONS if self.evaluate(principal, action, repository).allowed
        )

    def to_json(self) -> dict[str, Any]:
        """The document as given, in normal form: lists where IAM allows a string or a list."""
        document: dict[str, Any] = {"Version": self.version}
        if self.id is not None:
            document["Id"] = self.id
        document["Statement"] = [statement.to_json() for statement in self.statements]
        return document


def _context(principal: Principal) -> ConditionContext:
    return {
        PRINCIPAL_ORG: (principal.org,) if principal.org else (),
        PRINCIPAL_GROUPS: principal.groups,
        PRINCIPAL_NAME: (principal.name,),
        PRINCIPAL_TYPE: (principal.kind,),
    }
