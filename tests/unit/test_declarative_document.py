"""The declarative file: what it accepts, how secret references resolve, and errors that name
the file, the key and what to do (and never echo a secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullthrough.declarative.document import (
    Declaration,
    DocumentError,
    SecretValue,
    load_declaration,
    parse_declaration,
)
from pullthrough.declarative.references import UnresolvedReference, has_reference, resolve

EXAMPLE = Path(__file__).parents[2] / "examples" / "pullthrough.yaml"
ENV = {"DOCKER_HUB_USERNAME": "robot", "DOCKER_HUB_TOKEN": "dckr_pat_Zq81x-unit"}
SECRET = "ecr-pullthroughcache/docker-hub"


def parse(text: str, environ: dict[str, str] | None = None, base: Path = Path("/")) -> Declaration:
    return parse_declaration(text, "pullthrough.yaml", base, environ or {})


def problems(text: str, environ: dict[str, str] | None = None, base: Path = Path("/")) -> str:
    with pytest.raises(DocumentError) as caught:
        parse(text, environ, base)
    return str(caught.value)


def test_the_example_file_parses_into_normal_forms() -> None:
    declaration = load_declaration(EXAMPLE, ENV)
    assert declaration.sections == {"secrets", "rules", "templates", "registry_policy", "scanning"}
    rule = declaration.rules["docker-hub"]
    assert (rule.tag_ttl, rule.max_stale, rule.default) == (300.0, 7 * 86400.0, True)
    assert rule.credential == SECRET
    assert declaration.secrets[SECRET] == SecretValue("robot", "dckr_pat_Zq81x-unit")
    selection = declaration.templates["ROOT"]["lifecycle_policy"]["rules"][0]["selection"]
    assert selection == {
        "tagStatus": "any",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 7,
    }
    policy = declaration.registry_policy
    assert policy is not None
    assert policy["Version"] == "2012-10-17"  # unquoted dates would be text too
    assert policy["Statement"][0]["Resource"] == ["*"]  # normal form: lists
    assert declaration.scanning == {
        "scan_type": "BASIC",
        "rules": [
            {
                "scan_frequency": "SCAN_ON_PUSH",
                "repository_filters": [{"filter": "*", "filter_type": "WILDCARD"}],
            }
        ],
        "gates": [],
        "gate_wait_seconds": 30.0,
    }


def test_secret_values_are_hidden_from_repr() -> None:
    declaration = load_declaration(EXAMPLE, ENV)
    assert "dckr_pat_Zq81x-unit" not in repr(declaration)
    assert "robot" not in repr(declaration.secrets)


def test_a_clear_text_token_is_refused_with_what_to_write_instead() -> None:
    text = f"secrets:\n  {SECRET}:\n    username: robot\n    accessToken: hunter2-cleartext\n"
    message = problems(text)
    assert message == (
        f"pullthrough.yaml: secrets.{SECRET}.accessToken: clear-text tokens are not accepted "
        "in the file: write ${env:NAME} to take it from an environment variable, or "
        "file:/path to read it from a file"
    )
    assert "hunter2" not in message


def test_a_clear_text_username_is_fine_and_env_substitutes_inside_strings() -> None:
    text = (
        "secrets:\n  s:\n    username: ci-${env:TEAM}-bot\n"
        "    accessToken: tok-${env:TOKEN}-$${literal}\n"
    )
    declaration = parse(text, {"TEAM": "web", "TOKEN": "abc"})
    assert declaration.secrets["s"] == SecretValue("ci-web-bot", "tok-abc-${literal}")


def test_an_unset_variable_names_the_variable_key_and_file() -> None:
    message = problems(EXAMPLE.read_text(), {"DOCKER_HUB_USERNAME": "robot"})
    assert message == (
        f"pullthrough.yaml: secrets.{SECRET}.accessToken: environment variable "
        "DOCKER_HUB_TOKEN is not set: export it before running pullthrough"
    )


def test_file_references_read_the_whole_file_relative_to_the_declarative_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    (tmp_path / "user").write_text("robot")
    text = f"secrets:\n  s:\n    username: file:{tmp_path / 'user'}\n    accessToken: file:token\n"
    declaration = parse(text, base=tmp_path)
    assert declaration.secrets["s"] == SecretValue("robot", "from-a-file")


def test_a_missing_file_is_named() -> None:
    message = problems("secrets:\n  s:\n    username: u\n    accessToken: file:/nonexistent/t\n")
    assert message == (
        "pullthrough.yaml: secrets.s.accessToken: cannot read /nonexistent/t: "
        "No such file or directory"
    )


def test_references_resolve_env_inside_file_paths(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("v\r\n")
    assert resolve("file:${env:DIR}/t", {"DIR": str(tmp_path)}, Path("/")) == "v"
    assert has_reference("file:/x") and has_reference("a${env:B}")
    assert not has_reference("plain") and not has_reference("$${env:B}")
    with pytest.raises(UnresolvedReference, match=r"\$\{vault:x\} is not a reference"):
        resolve("${vault:x}", {}, Path("/"))


def test_a_resolved_value_the_server_would_refuse_is_reported_without_the_value() -> None:
    text = "secrets:\n  s:\n    username: ${env:U}\n    accessToken: ${env:T}\n"
    message = problems(text, {"U": "has:colon", "T": "zq-secret-zq"})
    assert "secrets.s: 'username' cannot contain ':'" in message
    assert "has:colon" not in message and "zq-secret-zq" not in message
    assert "accessToken" in problems(text, {"U": "u", "T": ""})


def test_every_problem_is_listed_with_its_key_path() -> None:
    text = """
rules:
  - prefix: docker-hub
    upstream: ftp://registry
    tag_ttl: soon
    colour: blue
  - upstream: https://ghcr.io
templates:
  - prefix: ROOT
    lifecycle_policy:
      rules: [{rulePriority: 1, selection: {tagStatus: any}, action: {type: expire}}]
scanning:
  scan_type: FANCY
"""
    lines = problems(text).splitlines()
    assert lines[0] == "pullthrough.yaml: rules.0.upstream: 'ftp://registry' is not an http(s) URL"
    assert lines[1] == (
        "pullthrough.yaml: rules.0.tag_ttl: 'soon' is not a duration (like 30s, 5m, 2h, 7d)"
    )
    assert lines[2].startswith("pullthrough.yaml: rules.0.colour: unknown key (known: prefix, ")
    assert lines[3] == "pullthrough.yaml: rules.1.prefix: required: add it"
    assert lines[4].startswith("pullthrough.yaml: templates.0.lifecycle_policy: rules[0]")
    assert lines[5] == "pullthrough.yaml: scanning.scan_type: Input should be 'BASIC' or 'ENHANCED'"
    assert len(lines) == 6


def test_relations_between_entries_are_checked() -> None:
    text = """
secrets: {}
rules:
  - {prefix: a, upstream: "https://a.example", default: true, credential: missing}
  - {prefix: a, upstream: "https://b.example"}
  - {prefix: c, upstream: "https://c.example", default: true}
templates:
  - {prefix: ROOT}
  - {prefix: ROOT}
scanning:
  scan_type: BASIC
  rules: [{scan_frequency: CONTINUOUS_SCAN, repository_filters: [{filter: "*"}]}]
"""
    assert problems(text).splitlines() == [
        "pullthrough.yaml: rules.0.credential: secret 'missing' is not under secrets:, which "
        "owns every secret on the server; add it there, or leave secrets: out to keep the "
        "server's secrets as they are",
        "pullthrough.yaml: rules.1.prefix: 'a' is already the prefix of rules.0; each prefix "
        "appears once",
        "pullthrough.yaml: rules.2.default: only one rule may be the default, and rules.0 "
        "already is",
        "pullthrough.yaml: templates.1.prefix: 'ROOT' is already the prefix of templates.0; "
        "each prefix appears once",
        "pullthrough.yaml: scanning.rules.0.scan_frequency: CONTINUOUS_SCAN does not go with "
        "scan_type BASIC; use SCAN_ON_PUSH or MANUAL",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file declares nothing: give one or more of secrets, rules, templates"),
        ("- a\n", "the file declares nothing"),
        ("rules:\n", "rules: is empty; write `rules: []` (or `{}`) to remove every one"),
        ("registry_policy:\n", "write `registry_policy: default` to remove the stored policy"),
        ("colour: blue\n", "colour: unknown key (known: secrets, rules, templates, scanning,"),
        ("a: 1\na: 2\n", "not valid YAML: line 2, column 1: the key 'a' is given twice"),
        ("rules: [\n", "not valid YAML: line 2"),
        (
            "scanning: {rules: [{scan_frequency: MANUAL, repository_filters: [{filter: A}]}]}",
            "scanning.rules.0.repository_filters.0.filter: 'A' is not a repository filter: use",
        ),
    ],
)
def test_file_level_problems(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_empty_sections_are_allowed_and_own_their_resources() -> None:
    declaration = parse("rules: []\nsecrets: {}\ntemplates: []\nregistry_policy: default\n")
    assert declaration.sections == {"rules", "secrets", "templates", "registry_policy"}
    assert declaration.registry_policy is None


def test_policies_may_be_json_text_and_are_validated() -> None:
    statement = '{"Effect": "Allow", "Action": "registry:Admin", "Resource": "*"}'
    text = f"registry_policy: '{{\"Statement\": {statement}}}'\n"
    declaration = parse(text)
    assert declaration.registry_policy == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["registry:Admin"], "Resource": ["*"]}],
    }
    message = problems("registry_policy: {Statement: [{Effect: Maybe}]}\n")
    assert message == (
        'pullthrough.yaml: registry_policy: Statement[0]: Effect "Maybe" is not valid: '
        'use "Allow" or "Deny"'
    )


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"missing\.yaml: cannot read it: No such file"):
        load_declaration(tmp_path / "missing.yaml", {})


def test_the_readme_shows_the_example_file_verbatim() -> None:
    # The README's "Declarative configuration" section embeds examples/pullthrough.yaml; this
    # keeps the two from drifting apart.
    readme = (EXAMPLE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"```yaml\n{EXAMPLE.read_text(encoding='utf-8')}```" in readme
