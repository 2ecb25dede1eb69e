"""Where an image reference lives in the cache, for a set of rules: every answer is a name the
server's own router serves from the image the reference names."""

from __future__ import annotations

import pytest

from pullthrough.cache.routing import Router
from pullthrough.client.naming import CachedName, CacheNaming, NoRule
from pullthrough.config import RuleConfig, Settings
from pullthrough.oci.reference import ReferenceInvalid

CACHE = "127.0.0.1:5000"
DIGEST = "sha256:" + "c0" * 32
RULES = (
    *Settings().rules,  # docker-hub (default), ghcr, quay, ecr-public, k8s, gitlab
    RuleConfig(prefix="ghcr/acme", upstream="https://ghcr.io", upstream_namespace="acme-corp"),
    RuleConfig(prefix="local", upstream="http://127.0.0.1:5001", implicit_namespace="library"),
)


@pytest.fixture
def naming() -> CacheNaming:
    return CacheNaming(RULES, CACHE)


HUB = "registry-1.docker.io"


@pytest.mark.parametrize(
    ("reference", "repository", "prefix", "fetched"),
    [
        ("nginx:1.27", "docker-hub/library/nginx", "docker-hub", f"{HUB}/library/nginx"),
        (
            "docker.io/library/nginx:1.27",
            "docker-hub/library/nginx",
            "docker-hub",
            f"{HUB}/library/nginx",
        ),
        ("docker.io/nginx:1.27", "docker-hub/library/nginx", "docker-hub", f"{HUB}/library/nginx"),
        (
            "index.docker.io/nginx:1.27",
            "docker-hub/library/nginx",
            "docker-hub",
            f"{HUB}/library/nginx",
        ),
        (
            "registry-1.docker.io/library/nginx:1.27",
            "docker-hub/library/nginx",
            "docker-hub",
            f"{HUB}/library/nginx",
        ),
        # What docker itself asks registry-1.docker.io for, for a short name.
        (
            "registry-1.docker.io/nginx:1.27",
            "docker-hub/library/nginx",
            "docker-hub",
            f"{HUB}/library/nginx",
        ),
        ("bitnami/nginx:1.27", "docker-hub/bitnami/nginx", "docker-hub", f"{HUB}/bitnami/nginx"),
        ("ghcr.io/owner/app:1.27", "ghcr/owner/app", "ghcr", "ghcr.io/owner/app"),
        ("GHCR.io/owner/app:1.27", "ghcr/owner/app", "ghcr", "ghcr.io/owner/app"),
        # The rule's upstream namespace is left out of the cache's name.
        ("ghcr.io/acme-corp/app:1.27", "ghcr/acme/app", "ghcr/acme", "ghcr.io/acme-corp/app"),
        ("ghcr.io/acme-corp/a/b:1.27", "ghcr/acme/a/b", "ghcr/acme", "ghcr.io/acme-corp/a/b"),
        ("quay.io/org/exporter:1.27", "quay/org/exporter", "quay", "quay.io/org/exporter"),
        ("registry.k8s.io/pause:1.27", "k8s/pause", "k8s", "registry.k8s.io/pause"),
        (
            "127.0.0.1:5001/busybox:1.27",
            "local/library/busybox",
            "local",
            "127.0.0.1:5001/library/busybox",
        ),
        ("127.0.0.1:5001/team/app:1.27", "local/team/app", "local", "127.0.0.1:5001/team/app"),
    ],
)
def test_located_by_registry_host(
    naming: CacheNaming, reference: str, repository: str, prefix: str, fetched: str
) -> None:
    located = naming.locate(reference)
    assert located == CachedName(
        repository=repository,
        reference="1.27",
        rule_prefix=prefix,
        full=f"{CACHE}/{repository}:1.27",
    )
    # The server serves that name, by that rule, from the image the reference names.
    route = Router(RULES).resolve(repository)
    assert route.rule.prefix == prefix
    assert f"{route.rule.upstream_host}/{route.upstream_repository}" == fetched


@pytest.mark.parametrize(
    ("reference", "full", "shown", "pulled"),
    [
        ("nginx", f"{CACHE}/docker-hub/library/nginx", "latest", "latest"),
        ("nginx:1.27", f"{CACHE}/docker-hub/library/nginx:1.27", "1.27", "1.27"),
        (f"nginx@{DIGEST}", f"{CACHE}/docker-hub/library/nginx@{DIGEST}", DIGEST, DIGEST),
        (f"nginx:1.27@{DIGEST}", f"{CACHE}/docker-hub/library/nginx:1.27@{DIGEST}", "1.27", DIGEST),
    ],
)
def test_tag_and_digest_as_written(
    naming: CacheNaming, reference: str, full: str, shown: str, pulled: str
) -> None:
    located = naming.locate(reference)
    assert located is not None
    assert (located.full, located.reference, located.pull_reference) == (full, shown, pulled)


@pytest.mark.parametrize(
    "reference",
    [
        f"{CACHE}/docker-hub/library/nginx:1.27",
        f"{CACHE}/docker-hub/nginx:1.27",  # the server adds library/ itself
        f"{CACHE}/ghcr/acme/app@{DIGEST}",
        f"{CACHE}/quay/prometheus/node-exporter",
        f"{CACHE}/nginx:1.27",  # registry-mirrors style: the default rule
    ],
)
def test_a_reference_through_the_cache_maps_to_itself(naming: CacheNaming, reference: str) -> None:
    located = naming.locate(reference)
    assert located is not None
    assert located.full == reference


@pytest.mark.parametrize(
    "reference",
    ["nginx:1.27", "ghcr.io/acme-corp/app", f"quay.io/org/app:1@{DIGEST}", "127.0.0.1:5001/x"],
)
def test_locating_is_idempotent(naming: CacheNaming, reference: str) -> None:
    first = naming.locate(reference)
    assert first is not None
    assert naming.locate(first.full) == first


def test_bare_prefixed_names_are_through_the_cache_unless_told_otherwise() -> None:
    # `prefetch docker-hub/library/nginx:1.27`: the prefix names the rule.
    located = CacheNaming(RULES, CACHE).locate("docker-hub/library/nginx:1.27")
    assert located is not None
    assert (located.full, located.rule_prefix) == (
        f"{CACHE}/docker-hub/library/nginx:1.27",
        "docker-hub",
    )
    assert CacheNaming(RULES, CACHE).locate("ghcr/acme/app:1") == CacheNaming(RULES, CACHE).locate(
        f"{CACHE}/ghcr/acme/app:1"
    )
    # Docker reads the same text as a Docker Hub repository, and so does `rewrite`.
    docker_reading = CacheNaming(RULES, CACHE, bare_prefixes=False)
    located = docker_reading.locate("docker-hub/library/nginx:1.27")
    assert located is not None
    assert located.full == f"{CACHE}/docker-hub/docker-hub/library/nginx:1.27"
    # A first component that is no rule's prefix is a Docker Hub namespace either way.
    assert CacheNaming(RULES, CACHE).locate("bitnami/nginx") == docker_reading.locate(
        "bitnami/nginx"
    )


def test_no_rule_for_the_registry(naming: CacheNaming) -> None:
    assert naming.locate("mcr.microsoft.com/dotnet/runtime:8.0") is None
    with pytest.raises(NoRule, match=r"no rule for registry mcr\.microsoft\.com: add a rule"):
        naming.resolve("mcr.microsoft.com/dotnet/runtime:8.0")


def test_no_host_needs_a_rule_for_docker_hub_even_with_a_default() -> None:
    # The default rule here fetches from ghcr.io: docker would pull `nginx` from Docker Hub, a
    # different image, so there is no name for it in this cache.
    rules = [RuleConfig(prefix="ghcr", upstream="https://ghcr.io", default=True)]
    naming = CacheNaming(rules, CACHE)
    assert naming.locate("nginx:1.27") is None
    assert naming.locate("docker.io/library/nginx:1.27") is None
    with pytest.raises(NoRule, match=r"no rule mirrors docker\.io"):
        naming.resolve("nginx:1.27")


def test_mirror_of_and_the_upstream_host_both_select_a_rule() -> None:
    mirror = RuleConfig(
        prefix="hub", upstream="https://mirror.gcr.io", mirror_of=("docker.io",), default=True
    )
    naming = CacheNaming([mirror], CACHE)
    for reference in ("nginx", "docker.io/library/nginx", "mirror.gcr.io/library/nginx"):
        located = naming.locate(reference)
        assert located is not None
        assert located.repository == "hub/library/nginx", reference


def test_the_default_rule_wins_among_rules_for_one_host() -> None:
    rules = [
        RuleConfig(prefix="hub-a", upstream="https://registry-1.docker.io"),
        RuleConfig(prefix="hub-b", upstream="https://registry-1.docker.io", default=True),
    ]
    located = CacheNaming(rules, CACHE).locate("nginx")
    assert located is not None
    assert located.rule_prefix == "hub-b"
    rules[1] = RuleConfig(prefix="hub-b", upstream="https://registry-1.docker.io")
    located = CacheNaming(rules, CACHE).locate("nginx")
    assert located is not None
    assert located.rule_prefix == "hub-a"  # then the order given


def test_a_name_another_rule_would_serve_from_elsewhere_is_not_offered(
    naming: CacheNaming,
) -> None:
    # Under rule ghcr, ghcr.io/acme/app would be ghcr/acme/app: rule ghcr/acme's name for
    # ghcr.io/acme-corp/app, another image.
    assert naming.locate("ghcr.io/acme/app:1") is None
    with pytest.raises(NoRule, match="ghcr/acme/app is rule ghcr/acme's name for"):
        naming.resolve("ghcr.io/acme/app:1")


def test_a_namespaced_rule_only_caches_its_namespace() -> None:
    rules = [RuleConfig(prefix="acme", upstream="https://ghcr.io", upstream_namespace="acme-corp")]
    naming = CacheNaming(rules, CACHE)
    located = naming.locate("ghcr.io/acme-corp/app")
    assert located is not None
    assert located.repository == "acme/app"
    with pytest.raises(NoRule, match="only fetch their upstream namespace"):
        naming.resolve("ghcr.io/other/app")


def test_through_the_cache_without_a_default_rule() -> None:
    naming = CacheNaming([RuleConfig(prefix="ghcr", upstream="https://ghcr.io")], CACHE)
    assert naming.locate(f"{CACHE}/ghcr/org/app") is not None
    with pytest.raises(NoRule, match="no rule is the default"):
        naming.resolve(f"{CACHE}/nginx")


def test_invalid_references_and_cache_hosts_raise(naming: CacheNaming) -> None:
    with pytest.raises(ReferenceInvalid, match="must be lowercase"):
        naming.locate("Nginx:1.27")
    with pytest.raises(ReferenceInvalid, match="not a registry host"):
        CacheNaming(RULES, "http://127.0.0.1:5000")
    # A trailing slash is forgiven; the host is kept as given.
    assert CacheNaming(RULES, "cache.example.com/").cache_host == "cache.example.com"
