"""Who is asking (`Principal`), and which of them a statement's `Principal` element names.

`"*"` and `{"AWS": "*"}` name everyone, anonymous callers included. `{"User": [...],
"Group": [...], "ApiKey": [...]}` name users, members of groups (users and API keys alike) and
API keys, with `*` and `?` wildcards; `{"User": "*"}` is every user but no API key. Names are
case-sensitive. A statement without a `Principal` applies to every authenticated principal, as
an identity policy would, but not to anonymous callers: opening the registry to the anonymous
should take a visible `"Principal": "*"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pullthrough.access.registry_policy.grammar import (
    PolicyError,
    compile_wildcard,
    json_object,
    string_list,
)

PrincipalKind = Literal["user", "apikey", "anonymous"]
_KINDS = ("user", "apikey", "anonymous")


@dataclass(frozen=True)
class Principal:
    name: str  # "alice", "ci-bot"
    kind: PrincipalKind
    org: str | None = None
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(
                f"principal kind must be one of {', '.join(_KINDS)}, not {self.kind!r}"
            )

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    def describe(self) -> str:
        """How messages name this principal: `principal "ci" (org acme)`."""
        if not self.authenticated:
            return "anonymous principal"
        return f'principal "{self.name}"' + (f" (org {self.org})" if self.org else "")


ANONYMOUS = Principal(name="anonymous", kind="anonymous")

_SELECTOR_KEYS = ("AWS", "User", "Group", "ApiKey")


@dataclass(frozen=True)
class PrincipalSelector:
    """A statement's `Principal` element."""

    everyone: bool = False
    star: bool = False  # written as the bare string "*" rather than {"AWS": "*"}
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    # compiled User, Group and ApiKey patterns
    matchers: tuple[tuple[re.Pattern[str], ...], ...] = field(
        compare=False, repr=False, default=((), (), ())
    )

    @classmethod
    def parse(cls, value: Any) -> PrincipalSelector:
        if value == "*":
            return cls(everyone=True, star=True)
        if isinstance(value, str):
            raise PolicyError(
                f'Principal "{value}" is not supported: use "*" or an object such as '
                '{"User": ["alice"], "Group": ["ops"], "ApiKey": ["ci-*"]}'
            )
        entries = json_object(value, "Principal")
        if not entries:
            raise PolicyError('Principal is an empty object: name "User", "Group" or "ApiKey"')
        for key in entries:
            if key not in _SELECTOR_KEYS:
                raise PolicyError(
                    f'Principal has the unknown key "{key}" (known: {", ".join(_SELECTOR_KEYS)})'
                )
        everyone = False
        if "AWS" in entries:
            for entry in string_list(entries["AWS"], "Principal AWS"):
                if entry != "*":
                    raise PolicyError(
                        f'Principal AWS "{entry}" names an AWS identity, which pullthrough cannot '
                        'match: use "*" for everyone, or name users, groups and API keys with '
                        '"User", "Group" and "ApiKey"'
                    )
            everyone = True
        names = [
            string_list(entries[key], f"Principal {key}") if key in entries else ()
            for key in ("User", "Group", "ApiKey")
        ]
        return cls(
            everyone=everyone,
            users=names[0],
            groups=names[1],
            api_keys=names[2],
            matchers=tuple(tuple(compile_wildcard(n) for n in group) for group in names),
        )

    def matches(self, principal: Principal) -> bool:
        if self.everyone:
            return True
        users, groups, api_keys = self.matchers
        if principal.kind == "user" and _any_fullmatch(users, (principal.name,)):
            return True
        if principal.kind == "apikey" and _any_fullmatch(api_keys, (principal.name,)):
            return True
        return principal.authenticated and _any_fullmatch(groups, principal.groups)

    def to_json(self) -> str | dict[str, list[str]]:
        if self.star:
            return "*"
        document: dict[str, list[str]] = {}
        if self.everyone:
            document["AWS"] = ["*"]
        for key, names in (("User", self.users), ("Group", self.groups), ("ApiKey", self.api_keys)):
            if names:
                document[key] = list(names)
        return document


def _any_fullmatch(patterns: tuple[re.Pattern[str], ...], values: tuple[str, ...]) -> bool:
    return any(pattern.fullmatch(value) for pattern in patterns for value in values)
