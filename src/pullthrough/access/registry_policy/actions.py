"""The actions a registry policy can grant, the ECR action names accepted as aliases so an ECR
policy can be pasted in, and how an `Action` entry (wildcards included) resolves to them."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType

from pullthrough.access.registry_policy.grammar import PolicyError, compile_wildcard

PULL = "registry:Pull"  # read what the cache holds: manifests, blobs, a repository's tags
IMPORT_UPSTREAM = "registry:ImportUpstream"  # make the cache fetch what it does not hold yet
LIST_REPOSITORIES = "registry:ListRepositories"  # the catalog (`/v2/_catalog`)
ADMIN = "registry:Admin"  # manage the registry itself: policy, secrets, rules, deletion

ACTIONS: frozenset[str] = frozenset({PULL, IMPORT_UPSTREAM, LIST_REPOSITORIES, ADMIN})

_NOTHING: frozenset[str] = frozenset()

# ECR action names and what each means here. Choices that are not obvious:
# - ecr:ListImages lists the tags of one repository (`/v2/<name>/tags/list`), which the
#   Distribution API scopes as a pull, so it is Pull, not ListRepositories.
# - ecr:CreateRepository is what ECR's pull-through cache needs to create the repository on a
#   first pull; pullthrough creates repositories by importing into them, so it is ImportUpstream.
# - Policy, rule and deletion calls are Admin, so `ecr:*` grants all four actions, as in ECR.
# - Some names have no counterpart and grant nothing, yet are accepted because pasted ECR
#   policies carry them: ecr:GetAuthorizationToken (logging in is authentication, not a grant)
#   and the push calls (pullthrough is a read-only cache; pushes fail whatever the policy says).
ECR_ALIASES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "ecr:BatchGetImage": frozenset({PULL}),
        "ecr:GetDownloadUrlForLayer": frozenset({PULL}),
        "ecr:BatchCheckLayerAvailability": frozenset({PULL}),
        "ecr:DescribeImages": frozenset({PULL}),
        "ecr:ListImages": frozenset({PULL}),
        "ecr:BatchImportUpstreamImage": frozenset({IMPORT_UPSTREAM}),
        "ecr:CreateRepository": frozenset({IMPORT_UPSTREAM}),
        "ecr:DescribeRepositories": frozenset({LIST_REPOSITORIES}),
        "ecr:BatchDeleteImage": frozenset({ADMIN}),
        "ecr:DeleteRepository": frozenset({ADMIN}),
        "ecr:GetRepositoryPolicy": frozenset({ADMIN}),
        "ecr:SetRepositoryPolicy": frozenset({ADMIN}),
        "ecr:DeleteRepositoryPolicy": frozenset({ADMIN}),
        "ecr:DescribeRegistry": frozenset({ADMIN}),
        "ecr:GetRegistryPolicy": frozenset({ADMIN}),
        "ecr:PutRegistryPolicy": frozenset({ADMIN}),
        "ecr:DeleteRegistryPolicy": frozenset({ADMIN}),
        "ecr:CreatePullThroughCacheRule": frozenset({ADMIN}),
        "ecr:DescribePullThroughCacheRules": frozenset({ADMIN}),
        "ecr:UpdatePullThroughCacheRule": frozenset({ADMIN}),
        "ecr:DeletePullThroughCacheRule": frozenset({ADMIN}),
        "ecr:ValidatePullThroughCacheRule": frozenset({ADMIN}),
        "ecr:PutRegistryScanningConfiguration": frozenset({ADMIN}),
        "ecr:GetRegistryScanningConfiguration": frozenset({ADMIN}),
        "ecr:CreateRepositoryCreationTemplate": frozenset({ADMIN}),
        "ecr:DescribeRepositoryCreationTemplates": frozenset({ADMIN}),
        "ecr:UpdateRepositoryCreationTemplate": frozenset({ADMIN}),
        "ecr:DeleteRepositoryCreationTemplate": frozenset({ADMIN}),
        "ecr:PutLifecyclePolicy": frozenset({ADMIN}),
        "ecr:GetLifecyclePolicy": frozenset({ADMIN}),
        "ecr:DeleteLifecyclePolicy": frozenset({ADMIN}),
        "ecr:StartLifecyclePolicyPreview": frozenset({ADMIN}),
        "ecr:GetLifecyclePolicyPreview": frozenset({ADMIN}),
        "ecr:StartImageScan": frozenset({ADMIN}),
        "ecr:DescribeImageScanFindings": frozenset({PULL}),
        "ecr:GetAuthorizationToken": _NOTHING,
        "ecr:PutImage": _NOTHING,
        "ecr:InitiateLayerUpload": _NOTHING,
        "ecr:UploadLayerPart": _NOTHING,
        "ecr:CompleteLayerUpload": _NOTHING,
    }
)

# Every name an Action entry can match, with the actions it grants. IAM compares action names
# case-insensitively, so the keys are lowered.
_VOCABULARY: Mapping[str, frozenset[str]] = {
    **{action.lower(): frozenset({action}) for action in ACTIONS},
    **{name.lower(): actions for name, actions in ECR_ALIASES.items()},
}
_CANONICAL = {name.lower(): name for name in (*sorted(ACTIONS), *ECR_ALIASES)}
_KNOWN = (
    f"{PULL}, {IMPORT_UPSTREAM}, {LIST_REPOSITORIES}, {ADMIN}, registry:*, "
    "or an ECR action such as ecr:BatchGetImage or ecr:BatchImportUpstreamImage"
)


def resolve_action(entry: str, field: str = "Action") -> frozenset[str]:
    """The actions an `Action` (or `NotAction`) entry grants: one name or a wildcard pattern
    over all names, `*`, `registry:*` and `ecr:*` included. An entry that names nothing we know
    is an error, so a typo cannot silently grant or deny nothing."""
    matcher = compile_wildcard(entry.lower())
    matched = [name for name in _VOCABULARY if matcher.fullmatch(name)]
    if not matched:
        message = f'{field} "{entry}" is not a known action (known: {_KNOWN})'
        close = difflib.get_close_matches(entry.lower(), _VOCABULARY, n=1, cutoff=0.75)
        if close:
            message += f'; did you mean "{_CANONICAL[close[0]]}"?'
        raise PolicyError(message)
    return frozenset().union(*(_VOCABULARY[name] for name in matched))
