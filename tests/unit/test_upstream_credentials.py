"""Upstream credentials never show their password, and env secrets have predictable names."""

from __future__ import annotations

import pytest

from pullthrough.upstream import Credential, EnvCredentialSource


def test_credential_repr_hides_the_password() -> None:
    credential = Credential("robot", "hunter2-secret")

    assert "hunter2-secret" not in repr(credential)
    assert "hunter2-secret" not in str(credential)
    assert "robot" in repr(credential)


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("pullthrough/docker-hub", "PULLTHROUGH_DOCKER_HUB"),
        ("ghcr", "GHCR"),
        ("team.a//quay--io", "TEAM_A_QUAY_IO"),
    ],
)
def test_variable_names(name: str, stem: str) -> None:
    assert EnvCredentialSource.variable_names(name) == (
        f"PULLTHROUGH_SECRET_{stem}_USERNAME",
        f"PULLTHROUGH_SECRET_{stem}_PASSWORD",
    )


def test_lookup_needs_both_variables() -> None:
    environ = {
        "PULLTHROUGH_SECRET_PULLTHROUGH_DOCKER_HUB_USERNAME": "robot",
        "PULLTHROUGH_SECRET_PULLTHROUGH_DOCKER_HUB_PASSWORD": "pw",
        "PULLTHROUGH_SECRET_GHCR_USERNAME": "only-user",
        "PULLTHROUGH_SECRET_QUAY_USERNAME": "",
        "PULLTHROUGH_SECRET_QUAY_PASSWORD": "pw",
    }
    source = EnvCredentialSource(environ)

    assert source.lookup("pullthrough/docker-hub") == Credential("robot", "pw")
    assert source.lookup("ghcr") is None
    assert source.lookup("quay") is None
    assert source.lookup("absent") is None


def test_lookup_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULLTHROUGH_SECRET_ECR_PUBLIC_USERNAME", "AWS")
    monkeypatch.setenv("PULLTHROUGH_SECRET_ECR_PUBLIC_PASSWORD", "token")

    assert EnvCredentialSource().lookup("ecr-public") == Credential("AWS", "token")
