"""The policy matrix: principals in two orgs and a shared group, each action, repositories
inside and outside the allowed prefixes, and a Deny that overrides every Allow."""

from __future__ import annotations

import pytest

from pullthrough.access.registry_policy.document import (
    ACTIONS,
    ADMIN,
    ANONYMOUS,
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    PolicyDocument,
    Principal,
)

POLICY = PolicyDocument.parse(
    """
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "AcmePull", "Effect": "Allow",
     "Action": "registry:Pull", "Resource": "repository/docker-hub/*",
     "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme"}}},
    {"Sid": "AcmeDevelopersImport", "Effect": "Allow",
     "Principal": {"Group": "developers"},
     "Action": "ecr:BatchImportUpstreamImage", "Resource": "repository/docker-hub/library/*",
     "Condition": {"StringEquals": {"aws:PrincipalOrgID": "acme"}}},
    {"Sid": "GlobexOwnImages", "Effect": "Allow",
     "NotAction": "registry:Admin", "Resource": "repository/ghcr/globex/*",
     "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "globex"}}},
    {"Sid": "DevelopersCatalog", "Effect": "Allow",
     "Principal": {"Group": "developers"},
     "Action": "registry:ListRepositories", "Resource": "*"},
    {"Sid": "AliceAdmin", "Effect": "Allow",
     "Principal": {"User": "alice"}, "Action": "registry:Admin", "Resource": "*"},
    {"Sid": "PublicPull", "Effect": "Allow",
     "Principal": "*", "Action": "registry:Pull", "Resource": "repository/public/*"},
    {"Sid": "NoProd", "Effect": "Deny",
     "Principal": "*", "Action": "registry:*", "Resource": "repository/docker-hub/prod/*"}
  ]
}
"""
)

PRINCIPALS = {
    "alice": Principal("alice", "user", org="acme", groups=("developers",)),
    "bob": Principal("bob", "user", org="acme"),
    "carol": Principal("carol", "user", org="globex", groups=("developers",)),
    "ci": Principal("ci", "apikey", org="globex"),
    "anonymous": ANONYMOUS,
}
LETTERS = {"P": PULL, "I": IMPORT_UPSTREAM, "L": LIST_REPOSITORIES, "A": ADMIN}

# What each principal may do on each repository: P = Pull, I = ImportUpstream,
# L = ListRepositories, A = Admin, "." = denied. `*` is a registry-wide request (the catalog).
# - alice: acme, developers, admin.  bob: acme, no groups.
# - carol: globex, developers.       ci: a globex API key.
# docker-hub/prod/app is all dots: NoProd denies even alice's catalog and admin rights there.
EXPECTED = """
                            alice  bob   carol  ci    anonymous
docker-hub/library/nginx    PILA   P...  ..L.   ....  ....
docker-hub/bitnami/redis    P.LA   P...  ..L.   ....  ....
docker-hub/prod/app         ....   ....  ....   ....  ....
ghcr/globex/tool            ..LA   ....  PIL.   PIL.  ....
ghcr/initech/tool           ..LA   ....  ..L.   ....  ....
public/busybox              P.LA   P...  P.L.   P...  P...
*                           ..LA   ....  ..L.   ....  ....
"""


def expected_cells() -> list[tuple[str, str, frozenset[str]]]:
    header, *rows = EXPECTED.strip().splitlines()
    names = header.split()
    assert names == list(PRINCIPALS)
    cells = []
    for row in rows:
        repository, *codes = row.split()
        assert len(codes) == len(names), row
        for name, code in zip(names, codes, strict=True):
            assert len(code) == len(LETTERS), row
            allowed = frozenset(LETTERS[c] for c in code if c != ".")
            cells.append((name, repository, allowed))
    return cells


CELLS = expected_cells()


@pytest.mark.parametrize(
    ("name", "action", "repository", "allowed"),
    [
        pytest.param(name, action, repo, action in allowed, id=f"{name}-{action}-{repo}")
        for name, repo, allowed in CELLS
        for action in (PULL, IMPORT_UPSTREAM, LIST_REPOSITORIES, ADMIN)
    ],
)
def test_policy_matrix(name: str, action: str, repository: str, allowed: bool) -> None:
    principal = PRINCIPALS[name]
    decision = POLICY.evaluate(principal, action, repository)
    assert decision.allowed is allowed, decision.explain(principal, action, repository)


@pytest.mark.parametrize(
    ("name", "repository", "allowed"),
    [pytest.param(name, repo, allowed, id=f"{name}-{repo}") for name, repo, allowed in CELLS],
)
def test_allowed_actions_agree_with_the_matrix(
    name: str, repository: str, allowed: frozenset[str]
) -> None:
    assert POLICY.allowed_actions(PRINCIPALS[name], repository) == allowed


def test_the_deny_overrides_every_allow() -> None:
    alice = PRINCIPALS["alice"]
    for action in ACTIONS:
        decision = POLICY.evaluate(alice, action, "docker-hub/prod/app")
        assert (decision.allowed, decision.reason, decision.statement) == (
            False,
            "explicit-deny",
            "NoProd",
        )
    # The same principal and actions are allowed next door, so the Deny is what decided.
    assert POLICY.allowed_actions(alice, "docker-hub/library/nginx") == ACTIONS


def test_the_matrix_covers_every_action_both_ways() -> None:
    for action in ACTIONS:
        outcomes = {action in allowed for _, _, allowed in CELLS}
        assert outcomes == {True, False}, action
