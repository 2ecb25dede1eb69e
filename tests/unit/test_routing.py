"""Routing: prefix rules, containerd's ns mirror mode, the default rule, Docker Hub's library/."""

from __future__ import annotations

import pytest

from pullthrough.cache.routing import Router
from pullthrough.config import RuleConfig
from pullthrough.errors import NameInvalid, NameUnknown

RULES = (
    RuleConfig(prefix="docker-hub", upstream="https://registry-1.docker.io", default=True),
    RuleConfig(prefix="ghcr", upstream="https://ghcr.io"),
    RuleConfig(prefix="ghcr/acme", upstream="https://ghcr.io", upstream_namespace="acme-corp"),
    RuleConfig(prefix="local", upstream="http://127.0.0.1:5001"),
)


@pytest.fixture
def router() -> Router:
    return Router(RULES)


def test_prefix_rule(router: Router) -> None:
    route = router.resolve("ghcr/owner/app")
    assert (route.rule.prefix, route.repository, route.upstream_repository) == (
        "ghcr",
        "ghcr/owner/app",
        "owner/app",
    )


def test_longest_prefix_wins_and_namespace_is_added(router: Router) -> None:
    route = router.resolve("ghcr/acme/app")
    assert route.rule.prefix == "ghcr/acme"
    assert route.repository == "ghcr/acme/app"
    assert route.upstream_repository == "acme-corp/app"


@pytest.mark.parametrize(
    ("name", "ns"),
    [
        ("docker-hub/busybox", None),
        ("docker-hub/library/busybox", None),
        ("busybox", None),
        ("library/busybox", None),
        ("busybox", "docker.io"),
        ("library/busybox", "registry-1.docker.io"),
        ("docker-hub/busybox", "docker.io"),
    ],
)
def test_every_way_in_reaches_one_repository(router: Router, name: str, ns: str | None) -> None:
    route = router.resolve(name, ns)
    assert route.repository == "docker-hub/library/busybox"
    assert route.upstream_repository == "library/busybox"


def test_ns_with_a_port_selects_the_rule_for_that_host(router: Router) -> None:
    route = router.resolve("team/app", "127.0.0.1:5001")
    assert route.repository == "local/team/app"


def test_prefix_wins_over_ns(router: Router) -> None:
    assert router.resolve("ghcr/o/app", "docker.io").rule.prefix == "ghcr"


def test_unknown_ns_is_never_the_default(router: Router) -> None:
    with pytest.raises(NameUnknown, match=r"'quay\.io'"):
        router.resolve("org/app", "quay.io")


def test_without_a_default_an_unprefixed_name_is_unknown() -> None:
    router = Router(RULES[1:])
    with pytest.raises(NameUnknown, match="matches no rule prefix"):
        router.resolve("org/app")


@pytest.mark.parametrize("name", ["", "UPPER/case", "a//b", "../etc", "a/../b", "a/./b", "-a"])
def test_invalid_names(router: Router, name: str) -> None:
    with pytest.raises(NameInvalid):
        router.resolve(name)


def test_mirror_of_adds_hosts_and_the_upstreams_own_host_still_answers() -> None:
    rule = RuleConfig(prefix="hub", upstream="http://127.0.0.1:5001", mirror_of=["docker.io"])
    router = Router([rule])
    by_mirror = router.resolve("library/busybox", "docker.io")
    by_own_host = router.resolve("library/busybox", "127.0.0.1:5001")
    assert by_mirror == by_own_host
    assert by_own_host.repository == "hub/library/busybox"
    with pytest.raises(NameUnknown, match="quay"):
        router.resolve("library/busybox", "quay.io")


def test_a_docker_hub_rule_with_mirror_of_keeps_docker_hubs_names() -> None:
    rule = RuleConfig(
        prefix="hub", upstream="https://registry-1.docker.io", mirror_of=["mirror.example"]
    )
    router = Router([rule])
    for ns in ("mirror.example", "docker.io", "index.docker.io", "registry-1.docker.io"):
        assert router.resolve("busybox", ns).repository == "hub/library/busybox", ns


def test_a_host_listed_in_mirror_of_wins_over_another_rules_upstream() -> None:
    rules = [
        RuleConfig(prefix="hub", upstream="https://registry-1.docker.io"),
        RuleConfig(prefix="internal", upstream="http://127.0.0.1:5001", mirror_of=["docker.io"]),
    ]
    router = Router(rules)
    assert router.resolve("library/busybox", "docker.io").rule.prefix == "internal"
    assert router.resolve("library/busybox", "index.docker.io").rule.prefix == "hub"
    assert router.resolve("library/busybox", "127.0.0.1:5001").rule.prefix == "internal"
