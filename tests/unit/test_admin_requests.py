"""Admin request parsing: strict JSON types, durations, the one-token rule of secrets, error
bodies that name the field, and the secret check that never reveals a value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pullthrough import jsondoc
from pullthrough.access.sealing import SecretKeySource
from pullthrough.access.secrets import SecretStore
from pullthrough.api.admin.body import first_repeated_key, parse_model
from pullthrough.api.admin.errors import Invalid, field_path, invalid_from
from pullthrough.api.admin.models import (
    RuleInput,
    ScanningInput,
    SecretCheck,
    SecretValue,
    TemplateInput,
)
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.upstream.credentials import Credential

UPSTREAM = "https://registry.example"


def _fields(model: type[Any], document: Any) -> list[str]:
    with pytest.raises(Invalid) as refused:
        parse_model(document, model)
    return [name for name, _ in refused.value.fields]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (30, 30.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0), ("7d", 604800.0)],
)
def test_durations_are_seconds_or_strings_with_a_unit(value: Any, seconds: float) -> None:
    rule = parse_model({"prefix": "x", "upstream": UPSTREAM, "tag_ttl": value}, RuleInput)
    assert rule.tag_ttl == seconds


@pytest.mark.parametrize("value", [-1, "5 m", "5x", "", True, None, [5], 1e300, "9" * 40])
def test_what_is_not_a_duration_is_refused_by_name(value: Any) -> None:
    document = {"prefix": "x", "upstream": UPSTREAM, "tag_ttl": value}
    assert _fields(RuleInput, document) == ["tag_ttl"]


def test_max_stale_may_be_null() -> None:
    rule = parse_model({"prefix": "x", "upstream": UPSTREAM, "max_stale": None}, RuleInput)
    assert rule.max_stale is None
    assert "max_stale" in rule.model_fields_set


@pytest.mark.parametrize(
    ("document", "fields"),
    [
        ({"prefix": "x", "upstream": UPSTREAM, "default": 1}, ["default"]),  # no 1 for true
        ({"prefix": "x", "upstream": UPSTREAM, "credential": 7}, ["credential"]),
        ({"prefix": "UP", "upstream": "https://a.io/v2/"}, ["prefix", "upstream"]),
        ({"prefix": "x", "upstream": UPSTREAM, "mirror_of": ["ok.io", "no way"]}, ["mirror_of.1"]),
        ({"upstream": UPSTREAM, "extra": True}, ["prefix", "extra"]),
        ("a rule", ["body"]),
    ],
)
def test_rule_errors_name_each_field(document: Any, fields: list[str]) -> None:
    assert sorted(_fields(RuleInput, document)) == sorted(fields)


def test_a_secret_takes_exactly_one_token() -> None:
    token = parse_model({"username": "u", "accessToken": "t"}, SecretValue)
    password = parse_model({"username": "u", "password": "p"}, SecretValue)
    assert (token.token, password.token) == ("t", "p")
    assert _fields(SecretValue, {"username": "u"}) == ["accessToken"]
    assert _fields(SecretValue, {"username": "u", "accessToken": "t", "password": "p"}) == [
        "accessToken"
    ]
    assert _fields(SecretValue, {"username": "u", "accessToken": ""}) == ["accessToken"]
    assert _fields(SecretValue, {"username": "a:b", "accessToken": "t"}) == ["username"]
    assert _fields(SecretCheck, {"username": "u", "accessToken": "t"}) == ["name"]


def test_a_refused_value_is_never_echoed() -> None:
    with pytest.raises(Invalid) as refused:
        parse_model({"username": ["s3cret-value"], "accessToken": "s3cret-token"}, SecretValue)
    assert "s3cret" not in str(refused.value.body())


def test_nested_errors_have_dotted_paths() -> None:
    document = {
        "scan_type": "BASIC",
        "rules": [
            {"scan_frequency": "MANUAL", "repository_filters": [{"filter": "*"}]},
            {"scan_frequency": "HOURLY", "repository_filters": [{"filter": "A B"}]},
        ],
    }
    assert sorted(_fields(ScanningInput, document)) == [
        "rules.1.repository_filters.0.filter",
        "rules.1.scan_frequency",
    ]
    assert field_path(()) == "body"
    assert field_path(("rules", 0, "upstream")) == "rules.0.upstream"


def test_templates_validate_their_lifecycle_policy() -> None:
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 3,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    template = parse_model({"prefix": "ROOT", "lifecycle_policy": policy}, TemplateInput)
    assert template.applied_for == ["PULL_THROUGH_CACHE"]
    assert template.lifecycle_policy == policy
    policy["rules"][0]["selection"]["countNumber"] = 0  # type: ignore[index]
    with pytest.raises(Invalid) as refused:
        parse_model({"prefix": "ROOT", "lifecycle_policy": policy}, TemplateInput)
    [(field, message)] = refused.value.fields
    assert field == "lifecycle_policy"
    assert "rules[0] (rulePriority 1): selection.countNumber" in message
    doubled = {"prefix": "ROOT", "applied_for": ["PULL_THROUGH_CACHE", "PULL_THROUGH_CACHE"]}
    assert _fields(TemplateInput, doubled) == ["applied_for"]
    assert _fields(TemplateInput, {"prefix": "Root"}) == ["prefix"]


def test_repeated_keys_are_found_anywhere() -> None:
    assert first_repeated_key(jsondoc.loads('{"a": 1, "b": [{"c": 1, "c": 2}]}')) == "b.0.c"
    assert first_repeated_key(jsondoc.loads('{"a": 1, "a": 2}')) == "a"
    assert first_repeated_key(jsondoc.loads('{"a": [1, {"b": 2}]}')) is None


def test_invalid_summarizes_several_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        RuleInput.model_validate({"prefix": 1, "upstream": 2}, strict=True)
    error = invalid_from(caught.value)
    assert error.status == 400
    assert error.message == "invalid fields: prefix, upstream"
    assert error.body()["code"] == "INVALID"


async def test_secret_checks_compare_without_revealing(tmp_path: Path) -> None:
    metadata = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    try:
        store = SecretStore(metadata, SecretKeySource(tmp_path))
        await store.put("pullthrough/hub", Credential("robot", "t0ken"))
        assert await store.matches("pullthrough/hub", Credential("robot", "t0ken")) is True
        assert await store.matches("pullthrough/hub", Credential("robot", "t0ken2")) is False
        assert await store.matches("pullthrough/hub", Credential("robo", "t0ken")) is False
        assert await store.matches("pullthrough/none", Credential("robot", "t0ken")) is None
    finally:
        await metadata.close()
