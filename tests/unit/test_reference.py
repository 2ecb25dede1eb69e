"""Image references, read as docker and containerd read them."""

from __future__ import annotations

import pytest

from pullthrough.oci.reference import (
    ImageReference,
    ReferenceInvalid,
    parse_reference,
    validate_registry_host,
)

DIGEST = "sha256:" + "4b" * 32


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("library/nginx:1.27", "docker.io/library/nginx:1.27"),
        ("bitnami/nginx", "docker.io/bitnami/nginx:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("index.docker.io/nginx:1.27", "docker.io/library/nginx:1.27"),
        ("index.docker.io/bitnami/nginx", "docker.io/bitnami/nginx:latest"),
        # Not docker's alias: a registry of its own, so no library/ either.
        ("registry-1.docker.io/nginx", "registry-1.docker.io/nginx:latest"),
        ("ghcr.io/org/app:1", "ghcr.io/org/app:1"),
        (f"ghcr.io/org/app:1@{DIGEST}", f"ghcr.io/org/app:1@{DIGEST}"),
        (f"ghcr.io/org/app@{DIGEST}", f"ghcr.io/org/app@{DIGEST}"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
        ("[::1]:5000/app:1", "[::1]:5000/app:1"),
        ("Registry/app", "Registry/app:latest"),  # capitals: a host, never a path
        # A lone `host:port` is a name and a tag, as docker reads it.
        ("localhost:5000", "docker.io/library/localhost:5000"),
        ("a/b/c/d:x_Y-1.0", "docker.io/a/b/c/d:x_Y-1.0"),
    ],
)
def test_normalised_as_docker_does(text: str, normalised: str) -> None:
    assert str(parse_reference(text)) == normalised


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("nginx", None, "nginx"),
        ("docker-hub/library/nginx", None, "docker-hub/library/nginx"),
        ("my.registry/app", "my.registry", "app"),
        ("registry:5000/app", "registry:5000", "app"),
        ("localhost/app", "localhost", "app"),
        ("localhostx/app", None, "localhostx/app"),
    ],
)
def test_host_is_the_first_component_with_a_dot_a_colon_or_localhost(
    text: str, domain: str | None, path: str
) -> None:
    reference = parse_reference(text)
    assert (reference.domain, reference.path) == (domain, path)


def test_tag_and_digest_are_both_kept_and_the_digest_is_what_is_pulled() -> None:
    reference = parse_reference(f"nginx:1.27@{DIGEST}")
    assert (reference.tag, reference.digest) == ("1.27", DIGEST)
    assert reference.pull_reference == DIGEST
    assert reference.suffix == f":1.27@{DIGEST}"
    assert parse_reference("nginx").pull_reference == "latest"
    assert parse_reference("nginx").suffix == ""


def test_a_parsed_reference_is_plain_data() -> None:
    assert parse_reference("ghcr.io/org/app:1") == ImageReference("ghcr.io", "org/app", "1", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Nginx", "must be lowercase"),
        ("docker.io/Library/nginx", "must be lowercase"),
        ("nginx:", "invalid tag ''"),
        ("nginx:.hidden", "invalid tag"),
        ("nginx:" + "t" * 129, "invalid tag"),
        ("nginx@sha256:abc", "sha256 takes 64 hex digits"),
        (f"nginx@md5:{'a' * 64}", "unsupported digest algorithm"),
        ("nginx@", "invalid digest"),
        ("a" * 64, "image ID is not a name"),
        ("ghcr.io/", "repository name is empty"),
        ("ghcr.io/org//app", "invalid repository name"),
        ("ex_ample.com/app", "not a registry host"),
        ("-registry.io/app", "not a registry host"),
        ("nginx 1.27", "invalid repository name"),
        (" nginx", "spaces around it"),
        ("my.registry/" + "a" * 250, "longer than 255"),
        (":1.27", "repository name is empty"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ReferenceInvalid) as raised:
        parse_reference(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_registry_hosts() -> None:
    assert validate_registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert validate_registry_host("cache.example.com") == "cache.example.com"
    assert validate_registry_host("[::1]:5000") == "[::1]:5000"
    for bad in ("http://127.0.0.1:5000", "cache:port", "", "a/b"):
        with pytest.raises(ReferenceInvalid, match="not a registry host"):
            validate_registry_host(bad)
