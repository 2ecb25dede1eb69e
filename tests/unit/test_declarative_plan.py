"""Plans against in-memory server state: creates, field-level updates, deletes and no-ops, the
ownership rule for sections, values normalised on both sides, and how plans read (text and
JSON) with secret values nowhere in them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pullthrough.declarative.document import Declaration, SecretValue, load_declaration
from pullthrough.declarative.fields import (
    ABSENT,
    FieldChange,
    policy_fields,
    rule_from_api,
    scanning_fields,
    template_from_api,
)
from pullthrough.declarative.plan import Plan, compute_plan
from pullthrough.declarative.render import plan_document, render_text
from pullthrough.declarative.state import ServerState

EXAMPLE = Path(__file__).parents[2] / "examples" / "pullthrough.yaml"
USERNAME, TOKEN = "robot-zq-user", "dckr_pat_Zq81x-plan"
ENV = {"DOCKER_HUB_USERNAME": USERNAME, "DOCKER_HUB_TOKEN": TOKEN}
SECRET = "ecr-pullthroughcache/docker-hub"
SERVER = "http://127.0.0.1:5000"
ALL = frozenset({"rules", "secrets", "templates", "registry_policy", "scanning"})


def example(text_edit: tuple[str, str] | None = None, tmp_path: Path | None = None) -> Declaration:
    if text_edit is None:
        return load_declaration(EXAMPLE, ENV)
    assert tmp_path is not None
    edited = EXAMPLE.read_text().replace(*text_edit)
    assert edited != EXAMPLE.read_text(), text_edit
    path = tmp_path / "pullthrough.yaml"
    path.write_text(edited)
    return load_declaration(path, ENV)


def matching_state() -> ServerState:
    """What the server answers after applying the example, in its own words: durations in
    seconds, lifecycle keys in another order, a policy with strings where the file has lists."""
    rule = {
        "prefix": "docker-hub",
        "upstream": "https://registry-1.docker.io",
        "default": True,
        "credential": SECRET,
        "mirror_of": None,
        "tag_ttl": 300,
        "max_stale": 604800.0,
        "negative_ttl": 30.0,
        "upstream_namespace": None,
        "implicit_namespace": None,
        "cache_prefix_url": "127.0.0.1:5000/docker-hub",
        "created_at": "2026-11-28T17:00:00Z",
        "updated_at": "2026-11-28T17:00:00Z",
    }
    template = {
        "prefix": "ROOT",
        "scan_on_pull": False,
        "applied_for": ["PULL_THROUGH_CACHE"],
        "description": "Expire cached images after a week",
        "lifecycle_policy": {
            "rules": [
                {
                    "action": {"type": "expire"},
                    "selection": {
                        "countNumber": 7,
                        "countUnit": "days",
                        "countType": "sinceImagePushed",
                        "tagStatus": "any",
                    },
                    "description": "Expire images older than 7 days",
                    "rulePriority": 1,
                }
            ]
        },
        "created_at": "2026-11-28T17:00:00Z",
        "updated_at": "2026-11-28T17:00:00Z",
    }
    policy = {
        "Statement": [
            {
                "Sid": "AcmePullThroughCache",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository", "registry:Pull"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "acme"}},
            },
            {
                "Sid": "PlatformTeamAdministers",
                "Effect": "Allow",
                "Principal": {"Group": "platform"},
                "Action": "registry:*",
                "Resource": "*",
            },
        ]
    }
    scanning = {
        "scan_type": "BASIC",
        "rules": [{"scan_frequency": "SCAN_ON_PUSH", "repository_filters": [{"filter": "*"}]}],
        "updated_at": "2026-11-28T17:00:00Z",
    }
    return ServerState(
        read=ALL,
        rules={"docker-hub": rule_from_api(rule)},
        secrets=frozenset({SECRET}),
        templates={"ROOT": template_from_api(template)},
        registry_policy=policy_fields(json.dumps(policy)),
        scanning=scanning_fields(scanning),
    )


class Checks:
    """The server's /secret-checks, over values it holds; records what it was asked."""

    def __init__(self, stored: dict[str, SecretValue]) -> None:
        self.stored = stored
        self.asked: list[str] = []

    def __call__(self, name: str, value: SecretValue) -> bool:
        self.asked.append(name)
        return self.stored.get(name) == value


SAME_SECRET = Checks({SECRET: SecretValue(USERNAME, TOKEN)})


def addresses(plan: Plan) -> list[tuple[str, str]]:
    return [(c.action, c.address) for c in plan.pending]


def assert_no_secret_values(*outputs: str) -> None:
    for output in outputs:
        assert TOKEN not in output
        assert USERNAME not in output


def test_an_empty_server_gets_everything() -> None:
    plan = compute_plan(example(), ServerState(read=ALL), Checks({}))
    assert addresses(plan) == [
        ("create", f'secret "{SECRET}"'),
        ("create", 'rule "docker-hub"'),
        ("create", 'template "ROOT"'),
        ("update", "scanning"),
        ("create", "registry_policy"),
    ]
    text = render_text(plan, SERVER)
    assert text.startswith(f"pullthrough will change {SERVER} to match {EXAMPLE}:\n\n")
    assert f'  + secret "{SECRET}" (value hidden)\n' in text
    assert (
        '  + rule "docker-hub"\n'
        '      prefix: "docker-hub"\n'
        '      upstream: "https://registry-1.docker.io"\n'
        "      default: true\n"
        f'      credential: "{SECRET}"\n'
        "      tag_ttl: 300\n"
        "      max_stale: 604800\n"
        "      negative_ttl: 30\n"
        "      eager_fill: true\n\n"
    ) in text
    assert "      lifecycle_policy.rules[0].selection.countNumber: 7\n" in text
    assert '      scan_type: "BASIC" -> "BASIC"' not in text  # only what changes
    assert '      rules[0].scan_frequency: (none) -> "SCAN_ON_PUSH"\n' in text
    assert text.endswith("Plan: 4 to add, 1 to change, 0 to destroy.\n")
    assert_no_secret_values(text, json.dumps(plan_document(plan, SERVER)), repr(plan))


def test_a_server_that_matches_in_its_own_words_needs_no_changes() -> None:
    checks = Checks({SECRET: SecretValue(USERNAME, TOKEN)})
    plan = compute_plan(example(), matching_state(), checks)
    assert plan.pending == ()
    assert [c.action for c in plan.changes] == ["no-op"] * 5
    assert checks.asked == [SECRET]
    assert render_text(plan, SERVER) == f"No changes. The server matches {EXAMPLE}.\n"


def test_editing_one_field_shows_exactly_that_change(tmp_path: Path) -> None:
    declaration = example(("tag_ttl: 5m", "tag_ttl: 10m"), tmp_path)
    plan = compute_plan(declaration, matching_state(), SAME_SECRET)
    assert addresses(plan) == [("update", 'rule "docker-hub"')]
    assert plan.pending[0].fields == (FieldChange("tag_ttl", 300.0, 600.0),)
    text = render_text(plan, SERVER)
    assert '  ~ rule "docker-hub"\n      tag_ttl: 300 -> 600\n\n' in text
    assert text.endswith("Plan: 0 to add, 1 to change, 0 to destroy.\n")
    assert len(text.splitlines()) == 6


def test_a_nested_lifecycle_change_is_shown_by_its_path(tmp_path: Path) -> None:
    declaration = example(("countNumber: 7", "countNumber: 14"), tmp_path)
    plan = compute_plan(declaration, matching_state(), SAME_SECRET)
    assert addresses(plan) == [("update", 'template "ROOT"')]
    text = render_text(plan, SERVER)
    assert (
        '  ~ template "ROOT"\n      lifecycle_policy.rules[0].selection.countNumber: 7 -> 14\n'
    ) in text


def test_a_changed_secret_is_an_update_by_name_only() -> None:
    checks = Checks({SECRET: SecretValue(USERNAME, "an-older-token")})
    plan = compute_plan(example(), matching_state(), checks)
    assert addresses(plan) == [("update", f'secret "{SECRET}"')]
    text = render_text(plan, SERVER)
    assert f'  ~ secret "{SECRET}" (value hidden)\n' in text
    document = plan_document(plan, SERVER)
    secret = document["changes"][0]
    assert secret == {
        "type": "secret",
        "name": SECRET,
        "address": f'secret "{SECRET}"',
        "action": "update",
        "fields": [],
        "value_hidden": True,
    }
    assert_no_secret_values(text, json.dumps(document), repr(plan))


def test_a_section_owns_its_resources_and_an_absent_one_is_left_alone(tmp_path: Path) -> None:
    state = matching_state()
    state.rules["ghcr"] = rule_from_api({"prefix": "ghcr", "upstream": "https://ghcr.io"})
    state.templates["docker-hub"] = template_from_api({"prefix": "docker-hub"})
    plan = compute_plan(example(), state, SAME_SECRET)
    assert addresses(plan) == [("delete", 'rule "ghcr"'), ("delete", 'template "docker-hub"')]
    text = render_text(plan, SERVER)
    assert '  - rule "ghcr"\n\n' in text
    assert text.endswith("Plan: 0 to add, 0 to change, 2 to destroy.\n")

    only_rules = tmp_path / "rules.yaml"
    only_rules.write_text("rules:\n  - {prefix: ghcr, upstream: 'https://ghcr.io'}\n")
    plan = compute_plan(load_declaration(only_rules, {}), state, SAME_SECRET)
    assert addresses(plan) == [("delete", 'rule "docker-hub"')]  # templates: not in the file
    assert {c.type for c in plan.changes} == {"rule"}


def test_registry_policy_default_removes_the_stored_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("registry_policy: default\n")
    plan = compute_plan(load_declaration(path, {}), matching_state(), SAME_SECRET)
    assert addresses(plan) == [("delete", "registry_policy")]
    assert "  - registry_policy (the built-in default policy applies again)\n" in render_text(
        plan, SERVER
    )
    plan = compute_plan(load_declaration(path, {}), ServerState(read=ALL), SAME_SECRET)
    assert plan.pending == ()


def test_a_policy_statement_change_is_one_line(tmp_path: Path) -> None:
    declaration = example(("aws:PrincipalOrgID: acme", "aws:PrincipalOrgID: globex"), tmp_path)
    plan = compute_plan(declaration, matching_state(), SAME_SECRET)
    (change,) = plan.pending
    assert change.fields == (
        FieldChange("Statement[0].Condition.StringEquals.aws:PrincipalOrgID", ["acme"], ["globex"]),
    )
    assert (
        '      Statement[0].Condition.StringEquals.aws:PrincipalOrgID: ["acme"] -> ["globex"]\n'
    ) in render_text(plan, SERVER)


def test_plan_json_lists_every_owned_resource() -> None:
    document = plan_document(compute_plan(example(), matching_state(), SAME_SECRET), SERVER)
    assert document["pending"] is False
    assert document["summary"] == {"add": 0, "change": 0, "destroy": 0}
    assert [(c["address"], c["action"]) for c in document["changes"]] == [
        (f'secret "{SECRET}"', "no-op"),
        ('rule "docker-hub"', "no-op"),
        ('template "ROOT"', "no-op"),
        ("scanning", "no-op"),
        ("registry_policy", "no-op"),
    ]
    state = matching_state()
    del state.rules["docker-hub"]
    document = plan_document(compute_plan(example(), state, SAME_SECRET), SERVER)
    rule = document["changes"][1]
    assert rule["action"] == "create"
    assert {"field": "tag_ttl", "old": None, "new": 300} in rule["fields"]


def test_warnings_for_what_the_plan_allows_but_was_probably_not_meant(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "secrets: {}\n"
        "registry_policy:\n"
        "  Statement: [{Effect: Allow, Action: registry:Pull, Resource: '*'}]\n"
    )
    plan = compute_plan(load_declaration(path, {}), matching_state(), SAME_SECRET)
    assert plan.warnings == (
        f'rule "docker-hub" names secret "{SECRET}", which this plan deletes: its pulls from '
        "upstream will fail until the secret is stored again",
        'no statement of the registry policy allows "registry:Admin" on Resource "*": with '
        "auth on, nobody could use the admin API (or plan and apply) after this apply",
    )
    assert f'Warning: rule "docker-hub" names secret "{SECRET}"' in render_text(plan, SERVER)

    path.write_text("rules:\n  - {prefix: a, upstream: 'https://a.example', credential: nope}\n")
    state = matching_state()
    plan = compute_plan(load_declaration(path, {}), state, SAME_SECRET)
    assert plan.warnings == (
        'rule "a" names secret "nope", which the server does not store: add it under secrets: '
        "or with `pullthrough secrets put`, or the server refuses the rule (unless its "
        "environment sets PULLTHROUGH_SECRET_NOPE_USERNAME and its _PASSWORD twin)",
    )


def test_field_changes_mark_what_one_side_lacks() -> None:
    from pullthrough.declarative.fields import field_changes

    before: dict[str, Any] = {"a": {"b": 1, "c": [1, 2]}, "gone": True}
    after: dict[str, Any] = {"a": {"b": 1, "c": [1, 3], "d": "new"}}
    assert field_changes(before, after) == (
        FieldChange("a.c", [1, 2], [1, 3]),
        FieldChange("a.d", ABSENT, "new"),
        FieldChange("gone", True, ABSENT),
    )


def test_a_list_that_fills_up_is_shown_by_its_items() -> None:
    from pullthrough.declarative.fields import field_changes

    assert field_changes({"rules": []}, {"rules": [{"a": 1}]}) == (
        FieldChange("rules[0].a", ABSENT, 1),
    )
    assert field_changes({"rules": [{"a": 1}]}, {"rules": []}) == (
        FieldChange("rules[0].a", 1, ABSENT),
    )
    assert field_changes({"m": None}, {"m": []}) == (FieldChange("m", None, []),)
