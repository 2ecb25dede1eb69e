"""Deciding requests against a registry policy: wildcards in actions, resources and principals,
conditions over principal attributes, explicit deny, and the messages a denied user reads."""

from __future__ import annotations

from typing import Any

import pytest

from pullthrough.access.registry_policy.document import (
    ACTIONS,
    ADMIN,
    ANONYMOUS,
    ECR_ALIASES,
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    REGISTRY_WIDE,
    Decision,
    PolicyDocument,
    Principal,
)

ALICE = Principal("alice", "user", org="acme", groups=("developers",))
BOB = Principal("bob", "user", org="acme")
CI_BOT = Principal("ci-bot", "apikey", org="globex", groups=("builders",))
NO_ORG = Principal("dana", "user")
NGINX = "docker-hub/library/nginx"


def policy_of(*statements: dict[str, Any]) -> PolicyDocument:
    return PolicyDocument.parse({"Version": "2012-10-17", "Statement": list(statements)})


def allow(**fields: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "registry:*", "Resource": "*", **fields}


@pytest.mark.parametrize(
    ("action", "granted"),
    [
        ("registry:Pull", {PULL}),
        ("registry:pull", {PULL}),  # IAM matches action names case-insensitively
        ("REGISTRY:IMPORTUPSTREAM", {IMPORT_UPSTREAM}),
        ("registry:*", ACTIONS),
        ("*", ACTIONS),
        ("registry:Im*", {IMPORT_UPSTREAM}),
        ("registry:*Repositories", {LIST_REPOSITORIES}),
        ("registry:?ull", {PULL}),
        ("ecr:*", ACTIONS),
        ("ecr:BatchGetImage", {PULL}),
        ("ecr:GetDownloadUrlForLayer", {PULL}),
        ("ecr:BatchCheckLayerAvailability", {PULL}),
        ("ecr:ListImages", {PULL}),  # a repository's tags: a pull in the Distribution API
        ("ecr:BatchImportUpstreamImage", {IMPORT_UPSTREAM}),
        ("ecr:CreateRepository", {IMPORT_UPSTREAM}),
        ("ecr:DescribeRepositories", {LIST_REPOSITORIES}),
        ("ecr:PutRegistryPolicy", {ADMIN}),
        ("ecr:batch*", {PULL, IMPORT_UPSTREAM, ADMIN}),  # BatchDeleteImage is Admin
        ("ecr:Describe*", {PULL, LIST_REPOSITORIES, ADMIN}),
        ("ecr:GetAuthorizationToken", set()),  # logging in is not a grant
        ("ecr:PutImage", set()),  # the cache is read-only: pushing is never granted
    ],
)
def test_action_entries_and_wildcards(action: str, granted: set[str]) -> None:
    policy = policy_of(allow(Action=action))
    assert policy.allowed_actions(ALICE, NGINX) == granted


def test_every_ecr_alias_grants_only_known_actions() -> None:
    assert all(actions <= ACTIONS for actions in ECR_ALIASES.values())
    assert frozenset().union(*ECR_ALIASES.values()) == ACTIONS


def test_not_action_grants_everything_else() -> None:
    statement = {"Effect": "Allow", "NotAction": ["registry:Admin", "ecr:DescribeRepositories"]}
    policy = policy_of({**statement, "Resource": "*"})
    assert policy.allowed_actions(ALICE, NGINX) == {PULL, IMPORT_UPSTREAM}


@pytest.mark.parametrize(
    ("resource", "repository", "matches"),
    [
        ("*", NGINX, True),
        ("repository/docker-hub/*", NGINX, True),  # `*` crosses `/`, as in IAM
        ("repository/docker-hub/*", "docker-hub", False),
        ("repository/docker-hub/*", "docker-hubby/app", False),
        ("repository/docker-hub/library/nginx", NGINX, True),
        ("repository/docker-hub/library/nginx", "docker-hub/library/nginx2", False),
        ("repository/*/nginx", NGINX, True),
        ("repository/ghcr/app?", "ghcr/app1", True),
        ("repository/ghcr/app?", "ghcr/app10", False),
        ("repository/Docker-Hub/*", NGINX, False),  # repository names are case-sensitive
        ("repository/docker-hub/lib.ary/*", NGINX, False),  # `.` is literal, not a regex
        ("arn:aws:ecr:us-east-1:111122223333:repository/docker-hub/*", NGINX, True),
        ("arn:aws:ecr:us-east-1:111122223333:repository/ghcr/*", NGINX, False),
        ("arn:aws:ecr:*:*:repository/*", NGINX, True),
        ("arn:aws-cn:ecr:cn-north-1:111122223333:repository/docker-hub/*", NGINX, True),
        ("arn:aws:ecr:us-east-1:111122223333:*", NGINX, True),
    ],
)
def test_resource_patterns(resource: str, repository: str, matches: bool) -> None:
    policy = policy_of(allow(Resource=resource, Action="registry:Pull"))
    assert policy.evaluate(ALICE, PULL, repository).allowed is matches


@pytest.mark.parametrize(
    ("resource", "matches"),
    [
        ("*", True),
        ("repository/*", True),
        ("arn:aws:ecr:us-east-1:111122223333:repository/*", True),
        ("repository/docker-hub/*", False),
        ("repository/?", False),
        ("repository/*/*", False),
    ],
)
def test_registry_wide_requests_need_a_resource_covering_everything(
    resource: str, matches: bool
) -> None:
    policy = policy_of(allow(Resource=resource, Action="registry:ListRepositories"))
    assert policy.evaluate(ALICE, LIST_REPOSITORIES, REGISTRY_WIDE).allowed is matches


@pytest.mark.parametrize(
    ("principal_element", "principal", "matches"),
    [
        ("*", ANONYMOUS, True),
        ("*", CI_BOT, True),
        ({"AWS": "*"}, ANONYMOUS, True),
        ({"AWS": ["*"]}, ALICE, True),
        ({"User": "alice"}, ALICE, True),
        ({"User": "alice"}, BOB, False),
        ({"User": ["bob", "al*"]}, ALICE, True),
        ({"User": "*"}, ALICE, True),
        ({"User": "*"}, CI_BOT, False),  # an API key is not a user
        ({"User": "*"}, ANONYMOUS, False),
        ({"User": "Alice"}, ALICE, False),  # names are case-sensitive
        ({"User": "ci-*"}, CI_BOT, False),
        ({"ApiKey": "ci-*"}, CI_BOT, True),
        ({"ApiKey": "ci-?ot"}, CI_BOT, True),
        ({"ApiKey": "*"}, ALICE, False),
        ({"ApiKey": "*"}, ANONYMOUS, False),
        ({"Group": "developers"}, ALICE, True),
        ({"Group": "developers"}, BOB, False),
        ({"Group": "build*"}, CI_BOT, True),  # groups hold API keys as well as users
        ({"Group": "*"}, BOB, False),  # no groups, no group match
        ({"Group": "*"}, ANONYMOUS, False),
        ({"User": "bob", "Group": "developers"}, ALICE, True),
        ({"User": "bob", "Group": "developers"}, BOB, True),
        ({"User": "bob", "Group": "developers"}, CI_BOT, False),
    ],
)
def test_principal_elements(principal_element: Any, principal: Principal, matches: bool) -> None:
    policy = policy_of(allow(Principal=principal_element))
    assert policy.evaluate(principal, PULL, NGINX).allowed is matches


def test_a_statement_without_principal_applies_to_authenticated_principals_only() -> None:
    policy = policy_of(allow())
    assert policy.evaluate(ALICE, PULL, NGINX).allowed
    assert policy.evaluate(CI_BOT, PULL, NGINX).allowed
    assert not policy.evaluate(ANONYMOUS, PULL, NGINX).allowed


def test_a_deny_without_principal_spares_anonymous_callers_but_star_does_not() -> None:
    open_pull = allow(Principal="*", Action="registry:Pull")
    members_only = policy_of(open_pull, {**allow(), "Effect": "Deny"})
    assert members_only.evaluate(ANONYMOUS, PULL, NGINX).allowed
    assert not members_only.evaluate(ALICE, PULL, NGINX).allowed
    closed = policy_of(open_pull, {**allow(), "Effect": "Deny", "Principal": "*"})
    assert not closed.evaluate(ANONYMOUS, PULL, NGINX).allowed


ORG = "pullthrough:PrincipalOrg"
GROUPS = "pullthrough:PrincipalGroups"
TEAM_A = Principal("a", "user", org="acme", groups=("team-a",))
TEAMS_AB = Principal("ab", "user", org="acme", groups=("team-a", "team-b"))
TEAM_A_AND_OPS = Principal("ao", "user", org="acme", groups=("team-a", "ops"))


@pytest.mark.parametrize(
    ("condition", "principal", "holds"),
    [
        ({"StringEquals": {ORG: "acme"}}, ALICE, True),
        ({"StringEquals": {ORG: "acme"}}, CI_BOT, False),
        ({"StringEquals": {ORG: ["globex", "acme"]}}, ALICE, True),  # any value matches
        ({"StringEquals": {ORG: "acme"}}, NO_ORG, False),  # a missing attribute never equals
        ({"StringEquals": {ORG: "ACME"}}, ALICE, False),  # values are case-sensitive
        ({"StringNotEquals": {ORG: "acme"}}, CI_BOT, True),
        ({"StringNotEquals": {ORG: "acme"}}, ALICE, False),
        ({"StringNotEquals": {ORG: "acme"}}, NO_ORG, True),  # ...and always "not equals"
        ({"StringLike": {ORG: "ac*"}}, ALICE, True),
        ({"StringLike": {ORG: "ac?"}}, ALICE, False),
        ({"StringLike": {ORG: "*"}}, NO_ORG, False),
        ({"StringNotLike": {ORG: "glob*"}}, ALICE, True),
        ({"StringNotLike": {ORG: "glob*"}}, CI_BOT, False),
        ({"StringNotLike": {ORG: "*"}}, NO_ORG, True),
        ({"StringEquals": {"aws:PrincipalOrgID": "acme"}}, ALICE, True),
        ({"stringequals": {"PULLTHROUGH:principalorg": "acme"}}, ALICE, True),
        ({"StringEquals": {"pullthrough:PrincipalType": "apikey"}}, CI_BOT, True),
        ({"StringEquals": {"pullthrough:PrincipalType": "apikey"}}, ALICE, False),
        ({"StringLike": {"pullthrough:PrincipalName": "ci-*"}}, CI_BOT, True),
        ({"StringLike": {"pullthrough:PrincipalName": "ci-*"}}, ALICE, False),
        # Without a set prefix, a multi-valued key means "any of the groups" ...
        ({"StringEquals": {GROUPS: "team-b"}}, TEAMS_AB, True),
        ({"StringEquals": {GROUPS: "team-b"}}, TEAM_A, False),
        # ... and its negation "none of the groups".
        ({"StringNotEquals": {GROUPS: "ops"}}, TEAMS_AB, True),
        ({"StringNotEquals": {GROUPS: "ops"}}, TEAM_A_AND_OPS, False),
        ({"StringNotEquals": {GROUPS: "ops"}}, BOB, True),
        ({"ForAnyValue:StringEquals": {GROUPS: ["ops", "team-b"]}}, TEAMS_AB, True),
        ({"ForAnyValue:StringEquals": {GROUPS: ["ops", "team-b"]}}, TEAM_A, False),
        ({"ForAnyValue:StringLike": {GROUPS: "*"}}, BOB, False),  # no groups: no value
        ({"ForAnyValue:StringNotEquals": {GROUPS: "team-a"}}, TEAMS_AB, True),
        ({"ForAnyValue:StringNotEquals": {GROUPS: "team-a"}}, TEAM_A, False),
        ({"ForAllValues:StringLike": {GROUPS: "team-*"}}, TEAMS_AB, True),
        ({"ForAllValues:StringLike": {GROUPS: "team-*"}}, TEAM_A_AND_OPS, False),
        ({"ForAllValues:StringLike": {GROUPS: "team-*"}}, BOB, True),  # vacuously, as in IAM
        ({"ForAllValues:StringNotEquals": {GROUPS: "ops"}}, TEAMS_AB, True),
        ({"ForAllValues:StringNotEquals": {GROUPS: "ops"}}, TEAM_A_AND_OPS, False),
        ({"ForAnyValue:StringEquals": {ORG: "acme"}}, ALICE, True),  # a set of one
        # Keys and operators are ANDed.
        ({"StringEquals": {ORG: "acme", GROUPS: "developers"}}, ALICE, True),
        ({"StringEquals": {ORG: "acme", GROUPS: "developers"}}, BOB, False),
        ({"StringEquals": {ORG: "acme"}, "StringNotLike": {GROUPS: "dev*"}}, ALICE, False),
        ({"StringEquals": {ORG: "acme"}, "StringNotLike": {GROUPS: "dev*"}}, BOB, True),
        ({}, NO_ORG, True),
    ],
)
def test_conditions(condition: dict[str, Any], principal: Principal, holds: bool) -> None:
    policy = policy_of(allow(Condition=condition))
    assert policy.evaluate(principal, PULL, NGINX).allowed is holds


def test_a_condition_on_a_deny_limits_the_deny() -> None:
    policy = policy_of(
        allow(Sid="Everyone"),
        {
            **allow(Sid="NotGlobex"),
            "Effect": "Deny",
            "Condition": {"StringEquals": {ORG: "globex"}},
        },
    )
    assert policy.evaluate(ALICE, PULL, NGINX) == Decision(True, "allowed", "Everyone")
    assert policy.evaluate(CI_BOT, PULL, NGINX) == Decision(False, "explicit-deny", "NotGlobex")


def test_decisions_name_the_deciding_statement() -> None:
    policy = policy_of(
        allow(Action="registry:Pull", Resource="repository/docker-hub/*"),
        allow(Sid="AlsoPull", Action="registry:Pull"),
        {
            **allow(Action="registry:Pull", Resource="repository/docker-hub/prod/*"),
            "Effect": "Deny",
        },
    )
    # The first matching Allow is named; an unnamed statement by its position.
    assert policy.evaluate(ALICE, PULL, NGINX) == Decision(True, "allowed", "Statement[0]")
    assert policy.evaluate(ALICE, PULL, "ghcr/app") == Decision(True, "allowed", "AlsoPull")
    assert policy.evaluate(ALICE, PULL, "docker-hub/prod/api") == Decision(
        False, "explicit-deny", "Statement[2]"
    )
    assert policy.evaluate(ALICE, IMPORT_UPSTREAM, NGINX) == Decision(False, "no-allow", None)


EXPLAIN_POLICY = policy_of(
    allow(Sid="PullOrg", Action="registry:Pull", Condition={"StringEquals": {ORG: "acme"}}),
    {**allow(Sid="NoProd", Resource="repository/docker-hub/prod/*"), "Effect": "Deny"},
    allow(Action="registry:ListRepositories", Resource="repository/docker-hub/*"),
)


@pytest.mark.parametrize(
    ("principal", "action", "repository", "message"),
    [
        (
            BOB,
            IMPORT_UPSTREAM,
            NGINX,
            'principal "bob" (org acme) may not registry:ImportUpstream on '
            "repository/docker-hub/library/nginx: no statement allows it",
        ),
        (
            BOB,
            PULL,
            "docker-hub/prod/api",
            'principal "bob" (org acme) may not registry:Pull on repository/docker-hub/prod/api: '
            'denied by statement "NoProd"',
        ),
        (
            BOB,
            PULL,
            NGINX,
            'principal "bob" (org acme) may registry:Pull on repository/docker-hub/library/nginx: '
            'allowed by statement "PullOrg"',
        ),
        (
            NO_ORG,
            PULL,
            NGINX,
            'principal "dana" may not registry:Pull on repository/docker-hub/library/nginx: '
            "no statement allows it",
        ),
        (
            ANONYMOUS,
            PULL,
            NGINX,
            "anonymous principal may not registry:Pull on repository/docker-hub/library/nginx: "
            "no statement allows it",
        ),
        (
            BOB,
            LIST_REPOSITORIES,
            NGINX,
            'principal "bob" (org acme) may registry:ListRepositories on '
            'repository/docker-hub/library/nginx: allowed by statement "Statement[2]"',
        ),
        (
            BOB,
            LIST_REPOSITORIES,
            REGISTRY_WIDE,
            'principal "bob" (org acme) may not registry:ListRepositories on the whole registry: '
            'no statement with Resource "*" allows it',
        ),
    ],
)
def test_explain(principal: Principal, action: str, repository: str, message: str) -> None:
    decision = EXPLAIN_POLICY.evaluate(principal, action, repository)
    assert decision.explain(principal, action, repository) == message


def test_allowed_actions_trims_to_what_the_policy_grants() -> None:
    policy = policy_of(
        allow(Action=["ecr:BatchGetImage", "ecr:BatchImportUpstreamImage"]),
        allow(Principal={"User": "alice"}, Action="registry:Admin"),
        {**allow(Action="registry:ImportUpstream", Resource="repository/ghcr/*"), "Effect": "Deny"},
    )
    assert policy.allowed_actions(ALICE, NGINX) == {PULL, IMPORT_UPSTREAM, ADMIN}
    assert policy.allowed_actions(ALICE, "ghcr/owner/app") == {PULL, ADMIN}
    assert policy.allowed_actions(BOB, NGINX) == {PULL, IMPORT_UPSTREAM}
    assert policy.allowed_actions(ANONYMOUS, NGINX) == frozenset()
