"""Where an image reference lives in the cache: `nginx:1.27` is
`127.0.0.1:5000/docker-hub/library/nginx:1.27`, for the rules the server has.

A reference finds its rule by registry host (a rule's `mirror_of` hosts or its upstream's host;
no host means docker.io, as docker reads it), and the name it gets is checked against the
server's own router, so the cache serves that name from the upstream image the reference names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pullthrough.cache.routing import Router
from pullthrough.config import RuleConfig
from pullthrough.errors import RegistryError
from pullthrough.oci.reference import (
    DEFAULT_TAG,
    ImageReference,
    parse_reference,
    validate_registry_host,
)


class NoRule(Exception):
    """No rule caches the image a reference names; the message says why and what to add."""


@dataclass(frozen=True, slots=True)
class CachedName:
    """An image's name through the cache."""

    repository: str  # `docker-hub/library/nginx`
    reference: str  # the tag (`1.27`), or the digest when no tag is written; for display
    rule_prefix: str
    full: str  # `<cache host>/<repository>` with `:tag`, `@digest` or both, as written
    digest: str | None = None

    @property
    def pull_reference(self) -> str:
        """What to ask the cache for: the digest wins over a tag, as it does for docker."""
        return self.digest or self.reference


class CacheNaming:
    """Maps image references to their names in the cache at `cache_host` (`host:port`).

    `bare_prefixes`: a reference without a registry host whose first path components are a
    rule's prefix (`docker-hub/library/nginx`) is taken as already through the cache, as
    `prefetch` lets people write it. Docker itself reads such a name as a Docker Hub
    repository, which is what `rewrite` needs (it passes False).
    """

    def __init__(
        self, rules: Sequence[RuleConfig], cache_host: str, *, bare_prefixes: bool = True
    ) -> None:
        self.rules = tuple(rules)
        # Raises ReferenceInvalid for anything that cannot start an image reference.
        self.cache_host = validate_registry_host(cache_host.strip().rstrip("/"))
        self._bare_prefixes = bare_prefixes
        self._router = Router(self.rules)
        # Longest prefix first, as the router matches them.
        self._prefixes = sorted((r.prefix.split("/") for r in self.rules), key=len, reverse=True)

    def locate(self, reference: str | ImageReference) -> CachedName | None:
        """The reference's name in the cache, or None when no rule caches its registry.
        Raises ReferenceInvalid for text that is not an image reference."""
        try:
            return self.resolve(reference)
        except NoRule:
            return None

    def resolve(self, reference: str | ImageReference) -> CachedName:
        """As `locate`, but raising NoRule with the reason instead of returning None."""
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        if ref.domain is not None and ref.domain.lower() == self.cache_host.lower():
            return self._through_cache(ref, ref.path)
        if ref.domain is None and self._bare_prefixes and self._has_rule_prefix(ref.path):
            return self._through_cache(ref, ref.path)
        return self._from_upstream(ref)

    def _has_rule_prefix(self, path: str) -> bool:
        segments = path.split("/")
        return any(len(segments) > len(p) and segments[: len(p)] == p for p in self._prefixes)

    def _through_cache(self, ref: ImageReference, path: str) -> CachedName:
        """A name already through the cache stays as written, if the server routes it."""
        try:
            route = self._router.resolve(path)
        except RegistryError as exc:
            raise NoRule(f"{self.cache_host}/{path}: {exc.message}") from None
        return self._named(path, route.rule.prefix, ref)

    def _from_upstream(self, ref: ImageReference) -> CachedName:
        host = ref.registry.lower()
        candidates = self._rules_for(host, ref.repository)
        if not candidates:
            raise NoRule(self._no_rule_message(ref, host))
        shadowed: list[str] = []
        for rule, remainder in candidates:
            if rule.library_namespace and "/" not in remainder:
                remainder = f"{rule.library_namespace}/{remainder}"
            repository = f"{rule.prefix}/{remainder}"
            try:
                route = self._router.resolve(repository)
            except RegistryError as exc:
                raise NoRule(f"{ref.registry}/{ref.path}: {exc.message}") from None
            # A longer prefix of another rule would serve this name from elsewhere.
            if route.rule.prefix == rule.prefix:
                return self._named(repository, rule.prefix, ref)
            shadowed.append(
                f"{repository} is rule {route.rule.prefix}'s name for "
                f"{route.rule.upstream_host}/{route.upstream_repository}"
            )
        raise NoRule(f"{ref.registry}/{ref.path} has no name in the cache: {'; '.join(shadowed)}")

    def _rules_for(self, host: str, path: str) -> list[tuple[RuleConfig, str]]:
        """Rules that fetch `host/path`, with the path each asks its upstream for, best first:
        a rule whose upstream namespace starts the path, then the default rule, then the
        rules in the order given."""
        found: list[tuple[int, RuleConfig, str]] = []
        for order, rule in enumerate(self.rules):
            if host not in rule.mirror_hosts and host != rule.upstream_host:
                continue
            namespace = rule.upstream_namespace
            if namespace is None:
                rank = len(self.rules) + (0 if rule.default else 1 + order)
                found.append((rank, rule, path))
            elif path.startswith(f"{namespace}/"):
                # The cache name leaves the namespace out; the rule puts it back upstream.
                found.append((-len(namespace), rule, path[len(namespace) + 1 :]))
        found.sort(key=lambda entry: entry[0])
        return [(rule, remainder) for _, rule, remainder in found]

    def _no_rule_message(self, ref: ImageReference, host: str) -> str:
        if ref.domain is None:
            return (
                f"no rule mirrors docker.io, where docker pulls {ref.path!r} from; add a rule "
                "for Docker Hub (or list docker.io in a rule's mirror_of)"
            )
        namespaced = [
            r.prefix for r in self.rules if host in r.mirror_hosts or host == r.upstream_host
        ]
        if namespaced:
            return (
                f"the rules for {ref.registry} ({', '.join(namespaced)}) only fetch their "
                f"upstream namespace, which {ref.path!r} is not in"
            )
        return (
            f"no rule for registry {ref.registry}: add a rule with upstream "
            f"https://{ref.registry}, or list {ref.registry} in a rule's mirror_of"
        )

    def _named(self, repository: str, prefix: str, ref: ImageReference) -> CachedName:
        return CachedName(
            repository=repository,
            reference=ref.tag or ref.digest or DEFAULT_TAG,
            rule_prefix=prefix,
            full=f"{self.cache_host}/{repository}{ref.suffix}",
            digest=ref.digest,
        )
