"""Settings: defaults, file and environment layering, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullthrough.config import ConfigError, load_settings, parse_duration


def test_embedded_defaults_cover_the_common_registries() -> None:
    settings = load_settings(environ={})
    assert settings.listen == "127.0.0.1:5000"
    prefixes = {rule.prefix: rule for rule in settings.rules}
    assert set(prefixes) == {"docker-hub", "ghcr", "quay", "ecr-public", "k8s", "gitlab"}
    assert prefixes["docker-hub"].default
    assert prefixes["docker-hub"].library_namespace == "library"
    assert "docker.io" in prefixes["docker-hub"].mirror_hosts
    assert prefixes["ghcr"].mirror_hosts == ("ghcr.io",)
    assert prefixes["ghcr"].library_namespace is None
    assert prefixes["docker-hub"].tag_ttl == 300


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "pullthrough.yaml"
    config.write_text(
        "listen: 127.0.0.1:6000\nworkers: 3\n"
        "rules:\n  - prefix: hub\n    upstream: https://registry-1.docker.io\n"
        "    default: true\n    tag_ttl: 0\n    max_stale: 7d\n"
    )
    settings = load_settings(config, environ={"PULLTHROUGH_WORKERS": "5"})
    assert settings.listen_port == 6000
    assert settings.workers == 5
    (rule,) = settings.rules
    assert rule.tag_ttl == 0
    assert rule.max_stale == 7 * 86400


def test_the_clients_variables_are_not_settings(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "PULLTHROUGH_SERVER": "http://127.0.0.1:5000",
            "PULLTHROUGH_TOKEN": "ci:ptk_x",
            "PULLTHROUGH_CLIENT_CONFIG": str(tmp_path / "client.yaml"),
            "PULLTHROUGH_WORKERS": "3",
        }
    )
    assert settings.workers == 3


def test_config_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("data_dir: /srv/cache\n")
    settings = load_settings(environ={"PULLTHROUGH_CONFIG": str(config)})
    assert settings.data_dir == Path("/srv/cache")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lisen: 127.0.0.1:5000\n", "lisen: unknown key"),
        ("listen: nowhere\n", "listen: listen 'nowhere' is not host:port"),
        ("rules:\n  - prefix: a\n    upstream: ftp://x\n", "rules.0.upstream"),
        ("rules:\n  - prefix: Bad\n    upstream: https://x\n", "rules.0.prefix"),
        ("rules:\n  - prefix: a\n    upstream: https://x\n    tag_ttl: soon\n", "rules.0.tag_ttl"),
        ("rules:\n  - prefix: a\n    upstream: https://x\n    colour: red\n", "rules.0.colour"),
        (
            "rules:\n  - {prefix: a, upstream: 'https://x', default: true}\n"
            "  - {prefix: b, upstream: 'https://y', default: true}\n",
            "only one rule may be the default",
        ),
        (
            "rules:\n  - {prefix: a, upstream: 'https://x'}\n  - {prefix: a, upstream: 'https://y'}\n",
            "prefix 'a' is used by more than one rule",
        ),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_config_names_the_key_and_file(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert expected in str(caught.value)
    assert str(config) in str(caught.value)


def test_unknown_environment_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="PULLTHROUGH_LISTN: unknown setting 'listn'"):
        load_settings(environ={"PULLTHROUGH_LISTN": "127.0.0.1:1"})


def test_secret_variables_are_not_settings() -> None:
    settings = load_settings(environ={"PULLTHROUGH_SECRET_HUB_USERNAME": "me"})
    assert settings.listen == "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("value", "seconds"), [(0, 0.0), ("30", 30.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0)]
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds
