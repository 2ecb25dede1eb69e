"""The calls Terraform's AWS provider makes for ECR's pull-through cache resources, replayed
with boto3 against pullthrough (the provider's `endpoints` block pointed at it, as the README
says): each resource created, read back as the provider reads it, updated, read again and
deleted, and what is read back matches what was configured, so a second `terraform plan` shows
no change. Secrets are read as the `aws_secretsmanager_secret` data source reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.aws_support import (
    AwsKey,
    Boto3Client,
    assert_valid_output,
    create_access_key,
)
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ADMINS = {
    "Sid": "Admins",
    "Effect": "Allow",
    "Principal": {"User": ["admin"]},
    "Action": "ecr:*",
    "Resource": "*",
}
EXPIRE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        }
    ]
}


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> Cache:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}},
    )
    cache.server.command("users", "add", "admin", stdin="admin-Secret-1")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [ADMINS]}))
    cache.server.command("policy", "put", "-f", str(policy))
    return cache


@pytest.fixture
def key(cache: Cache) -> AwsKey:
    return create_access_key(cache.server, "admin")


def _call(client: Boto3Client, operation: str, **params: Any) -> dict[str, Any]:
    answer = client.call(operation, **params)
    assert_valid_output(client.service, operation, answer)
    return answer


def _code(client: Boto3Client, operation: str, **params: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.call(operation, **params)
    return str(caught.value.response["Error"]["Code"])


def _equivalent(text: str, document: dict[str, Any]) -> bool:
    """As the provider compares IAM policies (awspolicyequivalence): a single string and a list
    of it are the same `Action`, `Resource` or principal list."""

    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) == 1:
                return normal(value[0])
            return sorted((normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return bool(normal(json.loads(text)) == normal(document))


def test_terraform_resources_created_read_back_updated_and_deleted(
    cache: Cache, key: AwsKey
) -> None:
    ecr = Boto3Client("ecr", key, cache.server.url)
    secrets = Boto3Client("secretsmanager", key, cache.server.url)
    value = json.dumps({"username": "robot", "accessToken": "token"})
    for name in ("ecr-pullthroughcache/first", "ecr-pullthroughcache/second"):
        _call(secrets, "CreateSecret", Name=name, SecretString=value)

    # data "aws_secretsmanager_secret": DescribeSecret by name gives the ARN the rule names.
    first = _call(secrets, "DescribeSecret", SecretId="ecr-pullthroughcache/first")["ARN"]
    second = _call(secrets, "DescribeSecret", SecretId="ecr-pullthroughcache/second")["ARN"]
    assert _code(secrets, "GetSecretValue", SecretId=first) == "AccessDeniedException"

    # aws_ecr_pull_through_cache_rule
    upstream = cache.proxy.url
    _call(
        ecr,
        "CreatePullThroughCacheRule",
        ecrRepositoryPrefix="tf",
        upstreamRegistryUrl=upstream,
        credentialArn=first,
    )

    def read_rule() -> dict[str, Any]:
        rules = _call(ecr, "DescribePullThroughCacheRules", ecrRepositoryPrefixes=["tf"])
        [rule] = rules["pullThroughCacheRules"]
        assert isinstance(rule, dict)
        return rule

    rule = read_rule()
    assert (rule["upstreamRegistryUrl"], rule["credentialArn"]) == (upstream, first)
    assert rule["registryId"] == "000000000000"
    _call(ecr, "UpdatePullThroughCacheRule", ecrRepositoryPrefix="tf", credentialArn=second)
    assert read_rule()["credentialArn"] == second
    _call(ecr, "DeletePullThroughCacheRule", ecrRepositoryPrefix="tf")
    assert (
        _code(ecr, "DescribePullThroughCacheRules", ecrRepositoryPrefixes=["tf"])
        == "PullThroughCacheRuleNotFoundException"
    )

    # aws_ecr_repository_creation_template (the provider sends its defaults explicitly)
    configured = {
        "prefix": "tf",
        "description": "made by terraform",
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "imageTagMutability": "MUTABLE",
        "encryptionConfiguration": {"encryptionType": "AES256"},
        "lifecyclePolicy": json.dumps(EXPIRE),
        "resourceTags": [],
    }
    _call(ecr, "CreateRepositoryCreationTemplate", **configured)

    def read_template() -> dict[str, Any]:
        found = _call(ecr, "DescribeRepositoryCreationTemplates", prefixes=["tf"])
        [template] = found["repositoryCreationTemplates"]
        assert isinstance(template, dict)
        return template

    template = read_template()
    for field in ("prefix", "description", "appliedFor", "imageTagMutability"):
        assert template[field] == configured[field], field
    assert template["encryptionConfiguration"] == configured["encryptionConfiguration"]
    assert json.loads(template["lifecyclePolicy"]) == EXPIRE
    _call(ecr, "UpdateRepositoryCreationTemplate", **{**configured, "description": "changed"})
    assert read_template()["description"] == "changed"
    _call(ecr, "DeleteRepositoryCreationTemplate", prefix="tf")
    gone = _call(ecr, "DescribeRepositoryCreationTemplates", prefixes=["tf"])
    assert gone["repositoryCreationTemplates"] == []

    # aws_ecr_registry_policy
    document = {"Version": "2012-10-17", "Statement": [ADMINS]}
    _call(ecr, "PutRegistryPolicy", policyText=json.dumps(document))
    assert _equivalent(_call(ecr, "GetRegistryPolicy")["policyText"], document)
    readers = {
        "Sid": "Readers",
        "Effect": "Allow",
        "Principal": {"User": ["*"]},
        "Action": ["ecr:BatchGetImage", "ecr:BatchImportUpstreamImage"],
        "Resource": "*",
    }
    changed = {"Version": "2012-10-17", "Statement": [ADMINS, readers]}
    _call(ecr, "PutRegistryPolicy", policyText=json.dumps(changed))
    assert _equivalent(_call(ecr, "GetRegistryPolicy")["policyText"], changed)

    # aws_ecr_registry_scanning_configuration (deleting it puts BASIC with no rules)
    rules = [
        {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": "tf/*", "filterType": "WILDCARD"}],
        }
    ]
    _call(ecr, "PutRegistryScanningConfiguration", scanType="BASIC", rules=rules)
    read = _call(ecr, "GetRegistryScanningConfiguration")["scanningConfiguration"]
    assert read == {"scanType": "BASIC", "rules": rules}
    _call(ecr, "PutRegistryScanningConfiguration", scanType="BASIC", rules=[])
    assert _call(ecr, "GetRegistryScanningConfiguration")["scanningConfiguration"]["rules"] == []

    # Destroying the policy last: the default applies, which grants no administration.
    _call(ecr, "DeleteRegistryPolicy")
    assert _code(ecr, "GetRegistryPolicy") == "AccessDeniedException"
    for name in ("ecr-pullthroughcache/first", "ecr-pullthroughcache/second"):
        assert _code(secrets, "DescribeSecret", SecretId=name) == "AccessDeniedException"
