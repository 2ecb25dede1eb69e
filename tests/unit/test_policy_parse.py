"""Registry policy documents: what parses, its normal form, and errors that point at the
offending statement and field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pullthrough.access.registry_policy.document import (
    ACTIONS,
    ANONYMOUS,
    IMPORT_UPSTREAM,
    PULL,
    PolicyDocument,
    PolicyError,
    Principal,
)

ALICE = Principal("alice", "user", org="acme")
PULL_ALL: dict[str, Any] = {"Effect": "Allow", "Action": "registry:Pull", "Resource": "*"}

# The registry policy from the brief, as the ECR pull-through cache docs shape it.
ECR_PULL_THROUGH_POLICY = """
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowPullThroughCacheImport",
      "Effect": "Allow",
      "Principal": {"AWS": "*"},
      "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
      "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/docker-hub/*"
    }
  ]
}
"""

# An ECR policy letting an AWS organisation pull, with its organisation ID condition.
ECR_ORG_PULL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowPullFromOrg",
            "Effect": "Allow",
            "Principal": "*",
            "Action": [
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetAuthorizationToken",
            ],
            "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
        }
    ],
}


def test_ecr_pull_through_cache_policy_pasted_as_is() -> None:
    policy = PolicyDocument.parse(ECR_PULL_THROUGH_POLICY)
    nginx = "docker-hub/library/nginx"
    assert policy.allowed_actions(ANONYMOUS, nginx) == {IMPORT_UPSTREAM}
    assert policy.allowed_actions(ALICE, nginx) == {IMPORT_UPSTREAM}
    assert policy.allowed_actions(ALICE, "ghcr/owner/app") == frozenset()


def test_ecr_org_policy_pasted_as_is() -> None:
    policy = PolicyDocument.parse(ECR_ORG_PULL_POLICY)
    member = Principal("bob", "user", org="o-a1b2c3d4e5")
    assert policy.allowed_actions(member, "ghcr/owner/app") == {PULL}
    assert policy.allowed_actions(ALICE, "ghcr/owner/app") == frozenset()
    assert policy.allowed_actions(ANONYMOUS, "ghcr/owner/app") == frozenset()


def test_text_bytes_and_mapping_parse_alike() -> None:
    text = json.dumps(ECR_ORG_PULL_POLICY)
    parsed = PolicyDocument.parse(ECR_ORG_PULL_POLICY)
    assert PolicyDocument.parse(text) == parsed
    assert PolicyDocument.parse(text.encode()) == parsed


def test_version_is_optional_and_the_2008_version_is_accepted() -> None:
    assert PolicyDocument.parse({"Statement": [PULL_ALL]}).version == "2012-10-17"
    old = PolicyDocument.parse({"Version": "2008-10-17", "Statement": [PULL_ALL]})
    assert old.evaluate(ALICE, PULL, "docker-hub/library/nginx").allowed


def test_a_single_statement_object_is_a_one_statement_list() -> None:
    single = PolicyDocument.parse({"Statement": PULL_ALL})
    assert single == PolicyDocument.parse({"Statement": [PULL_ALL]})


def test_no_statements_denies_everything() -> None:
    policy = PolicyDocument.parse({"Version": "2012-10-17", "Statement": []})
    assert policy.allowed_actions(ALICE, "docker-hub/library/nginx") == frozenset()


def test_to_json_gives_the_document_in_normal_form() -> None:
    given = {
        "Id": "registry",
        "Statement": {
            "Sid": "Acme",
            "Effect": "Allow",
            "Principal": {"Group": "ops", "AWS": "*"},
            "Action": "registry:pull",
            "Resource": "repository/docker-hub/*",
            "Condition": {"StringLike": {"aws:PrincipalOrgID": "acme-*"}},
        },
    }
    policy = PolicyDocument.parse(given)
    assert policy.to_json() == {
        "Version": "2012-10-17",
        "Id": "registry",
        "Statement": [
            {
                "Sid": "Acme",
                "Effect": "Allow",
                "Principal": {"AWS": ["*"], "Group": ["ops"]},
                "Action": ["registry:pull"],  # as written: wildcards have no canonical case
                "Resource": ["repository/docker-hub/*"],
                "Condition": {"StringLike": {"aws:PrincipalOrgID": ["acme-*"]}},
            }
        ],
    }
    assert PolicyDocument.parse(json.dumps(policy.to_json())) == policy


def test_to_json_keeps_not_action_a_bare_star_principal_and_ecr_arns() -> None:
    given = {
        "Version": "2008-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "NotAction": ["registry:Pull"],
                "Resource": ["arn:aws:ecr:*:*:repository/private/*"],
            }
        ],
    }
    assert PolicyDocument.parse(given).to_json() == given


def parse_error(document: Any) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        PolicyDocument.parse(document)
    return caught.value


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", "the policy must be a JSON object, not a list"),
        (
            {"Statement": [PULL_ALL], "Statements": []},
            'the policy has the unknown field "Statements" (known: Version, Id, Statement)',
        ),
        (
            {"Version": "2013-01-01", "Statement": []},
            'Version "2013-01-01" is not supported: use "2012-10-17"',
        ),
        ({"Version": 2012, "Statement": []}, "Version must be a string, not a number"),
        ({"Version": "2012-10-17"}, "the policy has no Statement"),
        (
            {"Statement": "Allow"},
            "Statement must be a list of statements or one statement, not a string",
        ),
        ({"Id": 7, "Statement": []}, "Id must be a string, not a number"),
        ('{"Statement": [], "Statement": []}', 'the policy has the key "Statement" more than once'),
    ],
)
def test_document_errors(document: Any, message: str) -> None:
    error = parse_error(document)
    assert str(error) == message
    assert (error.statement, error.sid) == (None, None)


def test_invalid_json_names_the_line_and_column() -> None:
    error = parse_error('{"Statement": [\n  {"Effect": "Allow",}\n]}')
    assert str(error).startswith("the policy is not valid JSON: ")
    assert str(error).endswith(": line 2 column 22 (char 37)")


# Each case is one bad statement, placed second (Statement[1]) after a valid one.
STATEMENT_ERRORS: list[tuple[str, Any, str]] = [
    ("not-an-object", "Allow everything", "the statement must be a JSON object, not a string"),
    ("sid-number", {**PULL_ALL, "Sid": 5}, "Sid must be a non-empty string, not a number"),
    (
        "unknown-field",
        {**PULL_ALL, "Efect": "Allow"},
        'unknown field "Efect" (known: Sid, Effect, Principal, Action, NotAction, Resource, '
        "Condition)",
    ),
    (
        "not-principal",
        {**PULL_ALL, "NotPrincipal": "*"},
        'NotPrincipal is not supported: name the principals in "Principal" instead',
    ),
    (
        "not-resource",
        {**PULL_ALL, "NotResource": "*"},
        'NotResource is not supported: list the repositories in "Resource" instead',
    ),
    (
        "effect-missing",
        {"Action": "registry:Pull", "Resource": "*"},
        'Effect is missing: use "Allow" or "Deny"',
    ),
    (
        "effect-lowercase",
        {**PULL_ALL, "Effect": "allow"},
        'Effect "allow" is not valid: use "Allow" or "Deny"',
    ),
    (
        "action-missing",
        {"Effect": "Allow", "Resource": "*"},
        'Action is missing: name actions such as "registry:Pull"',
    ),
    (
        "action-and-not-action",
        {**PULL_ALL, "NotAction": "registry:Admin"},
        "give Action or NotAction, not both",
    ),
    (
        "action-empty-list",
        {**PULL_ALL, "Action": []},
        "Action is an empty list: give at least one value",
    ),
    (
        "action-number",
        {**PULL_ALL, "Action": 3},
        "Action must be a string or a list of strings, not a number",
    ),
    (
        "action-null-in-list",
        {**PULL_ALL, "Action": ["registry:Pull", None]},
        "Action must hold only strings; found null",
    ),
    (
        "action-unknown-service",
        {**PULL_ALL, "Action": "s3:GetObject"},
        'Action "s3:GetObject" is not a known action (known: registry:Pull, '
        "registry:ImportUpstream, registry:ListRepositories, registry:Admin, registry:*, or an ECR "
        "action such as ecr:BatchGetImage or ecr:BatchImportUpstreamImage)",
    ),
    (
        "action-typo",
        {**PULL_ALL, "Action": ["registry:Pull", "registry:Import"]},
        'Action "registry:Import" is not a known action (known: registry:Pull, '
        "registry:ImportUpstream, registry:ListRepositories, registry:Admin, registry:*, or an ECR "
        "action such as ecr:BatchGetImage or ecr:BatchImportUpstreamImage); did you mean "
        '"registry:ImportUpstream"?',
    ),
    (
        "action-wildcard-matching-nothing",
        {**PULL_ALL, "Action": "registry:Push*"},
        'Action "registry:Push*" is not a known action',
    ),
    (
        "not-action-unknown",
        {"Effect": "Deny", "NotAction": "ecr:BatchGetImages", "Resource": "*"},
        'NotAction "ecr:BatchGetImages" is not a known action',
    ),
    (
        "resource-missing",
        {"Effect": "Allow", "Action": "registry:Pull"},
        'Resource is missing: use "*" for every repository, or "repository/<pattern>"',
    ),
    (
        "resource-s3-arn",
        {**PULL_ALL, "Resource": "arn:aws:s3:::bucket/*"},
        'Resource "arn:aws:s3:::bucket/*" is not a repository: use "*", "repository/<pattern>" '
        'such as "repository/docker-hub/*", or an ECR repository ARN',
    ),
    (
        "resource-bare-name",
        {**PULL_ALL, "Resource": "docker-hub/*"},
        'Resource "docker-hub/*" is not a repository',
    ),
    (
        "resource-empty-pattern",
        {**PULL_ALL, "Resource": ["*", "repository/"]},
        'Resource "repository/" is not a repository',
    ),
    (
        "resource-number-in-list",
        {**PULL_ALL, "Resource": ["*", 1]},
        "Resource must hold only strings; found 1",
    ),
    (
        "principal-name-string",
        {**PULL_ALL, "Principal": "alice"},
        'Principal "alice" is not supported: use "*" or an object such as {"User": ["alice"], '
        '"Group": ["ops"], "ApiKey": ["ci-*"]}',
    ),
    (
        "principal-aws-role",
        {**PULL_ALL, "Principal": {"AWS": "arn:aws:iam::1:role/pull"}},
        'Principal AWS "arn:aws:iam::1:role/pull" names an AWS identity, which pullthrough cannot '
        'match: use "*" for everyone, or name users, groups and API keys with "User", "Group" and '
        '"ApiKey"',
    ),
    (
        "principal-unknown-key",
        {**PULL_ALL, "Principal": {"Users": ["alice"]}},
        'Principal has the unknown key "Users" (known: AWS, User, Group, ApiKey)',
    ),
    (
        "principal-empty",
        {**PULL_ALL, "Principal": {}},
        'Principal is an empty object: name "User", "Group" or "ApiKey"',
    ),
    (
        "principal-empty-list",
        {**PULL_ALL, "Principal": {"Group": []}},
        "Principal Group is an empty list: give at least one value",
    ),
    (
        "principal-null",
        {**PULL_ALL, "Principal": None},
        "Principal must be a JSON object, not null",
    ),
    (
        "principal-list",
        {**PULL_ALL, "Principal": ["alice"]},
        "Principal must be a JSON object, not a list",
    ),
    (
        "condition-not-object",
        {**PULL_ALL, "Condition": "org is acme"},
        "Condition must be a JSON object, not a string",
    ),
    (
        "condition-unknown-operator",
        {**PULL_ALL, "Condition": {"NumericEquals": {}}},
        'Condition operator "NumericEquals" is not supported (known: StringEquals, '
        "StringNotEquals, StringLike, StringNotLike, optionally prefixed with ForAnyValue: or "
        "ForAllValues:)",
    ),
    (
        "condition-unknown-prefix",
        {
            **PULL_ALL,
            "Condition": {"ForSomeValues:StringEquals": {"pullthrough:PrincipalOrg": "a"}},
        },
        'Condition operator "ForSomeValues:StringEquals" is not supported',
    ),
    (
        "condition-unknown-key",
        {**PULL_ALL, "Condition": {"StringEquals": {"aws:SourceIp": "10.0.0.1"}}},
        'Condition StringEquals: "aws:SourceIp" is not a known condition key (known: '
        "pullthrough:PrincipalOrg, pullthrough:PrincipalGroups, pullthrough:PrincipalName, "
        "pullthrough:PrincipalType, aws:PrincipalOrgID)",
    ),
    (
        "condition-no-keys",
        {**PULL_ALL, "Condition": {"StringEquals": {}}},
        "Condition StringEquals has no condition keys",
    ),
    (
        "condition-keys-not-object",
        {**PULL_ALL, "Condition": {"StringEquals": ["acme"]}},
        "Condition StringEquals must be a JSON object, not a list",
    ),
    (
        "condition-value-number",
        {**PULL_ALL, "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": 42}}},
        'Condition StringEquals "pullthrough:PrincipalOrg" must be a string or a list of strings, '
        "not a number",
    ),
]


@pytest.mark.parametrize(
    ("statement", "message"),
    [pytest.param(statement, message, id=case) for case, statement, message in STATEMENT_ERRORS],
)
def test_statement_errors_point_at_the_statement(statement: Any, message: str) -> None:
    error = parse_error({"Version": "2012-10-17", "Statement": [PULL_ALL, statement]})
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    sid = sid if isinstance(sid, str) else None
    where = f'Statement[1] (Sid "{sid}")' if sid else "Statement[1]"
    assert str(error).startswith(f"{where}: {message}")
    assert error.statement == 1
    assert error.sid == sid
    assert error.detail.startswith(message)


def test_the_sid_is_named_when_there_is_one() -> None:
    statement = {"Sid": "PullOrg", "Effect": "Allow", "Action": "registry:Pul", "Resource": "*"}
    error = parse_error({"Statement": [PULL_ALL, PULL_ALL, statement]})
    assert str(error).startswith(
        'Statement[2] (Sid "PullOrg"): Action "registry:Pul" is not a known action (known: '
    )
    assert str(error).endswith('; did you mean "registry:Pull"?')
    assert (error.statement, error.sid) == (2, "PullOrg")
    assert isinstance(error, ValueError)


def test_duplicate_sids_are_refused() -> None:
    first, second = {**PULL_ALL, "Sid": "Pull"}, {**PULL_ALL, "Sid": "Pull"}
    error = parse_error({"Statement": [first, PULL_ALL, second]})
    assert str(error) == 'Statement[2] (Sid "Pull"): Sid "Pull" is already used by Statement[0]'


def test_a_key_given_twice_in_a_statement_is_refused() -> None:
    text = """{"Statement": [
        {"Sid": "Twice", "Effect": "Allow", "Action": "registry:Pull", "Action": "registry:*",
         "Resource": "*"}
    ]}"""
    error = parse_error(text)
    assert (
        str(error)
        == 'Statement[0] (Sid "Twice"): the statement has the key "Action" more than once'
    )


def test_a_key_given_twice_in_a_condition_is_refused() -> None:
    text = """{"Statement": [
        {"Effect": "Allow", "Action": "registry:Pull", "Resource": "*",
         "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme",
                                        "pullthrough:PrincipalOrg": "globex"}}}
    ]}"""
    error = parse_error(text)
    assert str(error) == (
        'Statement[0]: Condition StringEquals has the key "pullthrough:PrincipalOrg" more than once'
    )


def test_evaluating_an_unknown_action_is_a_programming_error() -> None:
    policy = PolicyDocument.parse({"Statement": [PULL_ALL]})
    with pytest.raises(ValueError, match="unknown action 'ecr:BatchGetImage'"):
        policy.evaluate(ALICE, "ecr:BatchGetImage", "docker-hub/library/nginx")
    assert len(ACTIONS) == 4
