"""Which upstream rule answers a request: by path prefix, by containerd's `ns`, or the default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pullthrough.config import RuleConfig, rules_by_host
from pullthrough.errors import NameUnknown
from pullthrough.oci.names import validate_name


@dataclass(frozen=True, slots=True)
class Route:
    rule: RuleConfig
    # The repository's name here, `<prefix>/<upstream name without namespace>`: every way in
    # (prefix, ns, default) reaches the same local repository.
    repository: str
    upstream_repository: str


class Router:
    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        # Longest prefix first, so `ghcr/org` wins over `ghcr` for `ghcr/org/app`.
        self._by_prefix = sorted(rules, key=lambda r: r.prefix.count("/"), reverse=True)
        self._default = next((r for r in rules if r.default), None)
        self._by_host = rules_by_host(rules)

    def resolve(self, name: str, ns: str | None = None) -> Route:
        validate_name(name)
        segments = name.split("/")
        for rule in self._by_prefix:
            prefix = rule.prefix.split("/")
            if len(segments) > len(prefix) and segments[: len(prefix)] == prefix:
                return self._route(rule, "/".join(segments[len(prefix) :]))
        if ns:
            host = ns.strip().lower()
            rule_for_host = self._by_host.get(host)
            if rule_for_host is None:
                raise NameUnknown(
                    f"no rule answers for registry {ns!r} (asked as ns={ns!r} for {name!r}); "
                    "add a rule with that upstream, or list the host in a rule's mirror_of"
                )
            return self._route(rule_for_host, name)
        if self._default is None:
            prefixes = ", ".join(sorted(r.prefix for r in self._by_prefix)) or "none"
            raise NameUnknown(
                f"repository {name!r} matches no rule prefix ({prefixes}) and no rule is the "
                "default"
            )
        return self._route(self._default, name)

    def rule_for_prefix(self, prefix: str) -> RuleConfig | None:
        return next((r for r in self._by_prefix if r.prefix == prefix), None)

    @staticmethod
    def _route(rule: RuleConfig, remainder: str) -> Route:
        if rule.library_namespace and "/" not in remainder:
            remainder = f"{rule.library_namespace}/{remainder}"
        repository = validate_name(f"{rule.prefix}/{remainder}")
        upstream = remainder
        if rule.upstream_namespace:
            upstream = f"{rule.upstream_namespace}/{remainder}"
        return Route(rule=rule, repository=repository, upstream_repository=upstream)
