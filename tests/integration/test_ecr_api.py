"""The ECR-compatible API with the AWS CLI and boto3, as a team that set up ECR's pull-through
cache would point them at pullthrough (`--endpoint-url`): every action answers with shapes that
validate against botocore's service model, and the setup walk-through works end to end with
only AWS CLI commands and skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.aws_support import (
    AwsKey,
    Boto3Client,
    CliClient,
    Client,
    assert_valid_output,
    create_access_key,
)
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry, require_binary
from tests.rig.skopeo import SKOPEO_TIMEOUT, verified_dir_digests

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-Secret-1"
DORA_PASSWORD = "dora-Secret-1"
EXPIRE_UNTAGGED = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "untagged images go after a day",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
}
KEEP_NEWEST = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}
ADMINS = {
    "Sid": "Admins",
    "Effect": "Allow",
    "Principal": {"User": ["admin"]},
    "Action": ["ecr:*"],
    "Resource": "*",
}
ACME_PULLS = {
    "Sid": "AcmePullsThroughTheCache",
    "Effect": "Allow",
    "Principal": {"User": ["*"]},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchImportUpstreamImage"],
    "Resource": "*",
    "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme"}},
}
BOOTSTRAP_POLICY = {"Version": "2012-10-17", "Statement": [ADMINS]}


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> Cache:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}, "aws": {"account_id": "123456789012"}},
    )
    server = cache.server
    server.command("users", "add", "admin", "--org", "ops", stdin=ADMIN_PASSWORD)
    server.command("users", "add", "dora", "--org", "acme", stdin=DORA_PASSWORD)
    policy = tmp_path / "bootstrap-policy.json"
    policy.write_text(json.dumps(BOOTSTRAP_POLICY))
    server.command("policy", "put", "-f", str(policy))  # returns once the server applies it
    return cache


@pytest.fixture
def admin_key(cache: Cache) -> AwsKey:
    return create_access_key(cache.server, "admin")


def skopeo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("skopeo"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )


def _client(driver: str, service: str, key: AwsKey, cache: Cache, home: Path) -> Client:
    if driver == "cli":
        return CliClient(service, home, key, cache.server.url)
    return Boto3Client(service, key, cache.server.url)


def _error(client: Client, operation: str, **params: Any) -> str:
    """The AWS error code and message a call that must fail got, as the user sees them."""
    if isinstance(client, CliClient):
        return client.error(operation, **params)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.call(operation, **params)
    error = caught.value.response["Error"]
    return f"({error['Code']}) {error['Message']}"


def _valid(client: Client, operation: str, **params: Any) -> dict[str, Any]:
    answer = client.call(operation, **params)
    assert_valid_output(client.service, operation, answer)
    return answer


@pytest.mark.parametrize("driver", ["cli", "boto3"])
def test_every_action_answers_in_the_shape_of_the_service_model(
    cache: Cache,
    admin_key: AwsKey,
    fixture_images: FixtureImages,
    tmp_path: Path,
    driver: str,
) -> None:
    home = tmp_path / "home"
    ecr = _client(driver, "ecr", admin_key, cache, home)
    secrets = _client(driver, "secretsmanager", admin_key, cache, home)
    sts = _client(driver, "sts", admin_key, cache, home)
    account = "123456789012"

    identity = _valid(sts, "GetCallerIdentity")
    assert identity["Account"] == account
    assert identity["Arn"] == f"arn:aws:iam::{account}:user/admin"
    assert identity["UserId"] == admin_key.access_key_id

    # Secrets Manager: written and described, never read back.
    name = "ecr-pullthroughcache/upstream"
    value = json.dumps({"username": "robot", "accessToken": "first"})
    created = _valid(secrets, "CreateSecret", Name=name, SecretString=value)
    arn = f"arn:aws:secretsmanager:us-east-1:{account}:secret:{name}"
    assert created["ARN"] == arn and created["Name"] == name
    assert "ResourceExistsException" in _error(
        secrets, "CreateSecret", Name=name, SecretString=value
    )
    second = json.dumps({"username": "robot", "accessToken": "second"})
    _valid(secrets, "PutSecretValue", SecretId=arn, SecretString=second)
    assert _valid(secrets, "DescribeSecret", SecretId=name)["ARN"] == arn
    assert [s["Name"] for s in _valid(secrets, "ListSecrets")["SecretList"]] == [name]
    refused = _error(secrets, "GetSecretValue", SecretId=name)
    assert "AccessDeniedException" in refused and "never returns a secret's value" in refused
    checked = httpx.post(
        cache.url("/api/v1/secret-checks"),
        json={"name": name, "username": "robot", "accessToken": "second"},
        auth=("admin", ADMIN_PASSWORD),
        timeout=30,
    )
    assert checked.json()["matches"] is True  # the store holds what PutSecretValue sent

    # Pull-through cache rules.
    upstream = cache.proxy.url
    rule = _valid(
        ecr, "CreatePullThroughCacheRule", ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream
    )
    assert rule["ecrRepositoryPrefix"] == "hub" and rule["upstreamRegistryUrl"] == upstream
    assert "PullThroughCacheRuleAlreadyExistsException" in _error(
        ecr,
        "CreatePullThroughCacheRule",
        ecrRepositoryPrefix="hub",
        upstreamRegistryUrl=upstream + "/",
    )
    updated = _valid(
        ecr, "UpdatePullThroughCacheRule", ecrRepositoryPrefix="hub", credentialArn=arn
    )
    assert updated["credentialArn"] == arn
    described = _valid(ecr, "DescribePullThroughCacheRules", ecrRepositoryPrefixes=["hub"])
    [hub] = described["pullThroughCacheRules"]
    assert hub["credentialArn"] == arn and hub["upstreamRegistryUrl"] == upstream
    everything = _valid(ecr, "DescribePullThroughCacheRules")["pullThroughCacheRules"]
    assert sorted(r["ecrRepositoryPrefix"] for r in everything) == ["hub", "up"]
    validated = _valid(ecr, "ValidatePullThroughCacheRule", ecrRepositoryPrefix="hub")
    assert validated["isValid"] is True
    assert "PullThroughCacheRuleNotFoundException" in _error(
        ecr, "DescribePullThroughCacheRules", ecrRepositoryPrefixes=["nope"]
    )

    # Creation templates.
    root = _valid(
        ecr,
        "CreateRepositoryCreationTemplate",
        prefix="ROOT",
        appliedFor=["PULL_THROUGH_CACHE"],
        lifecyclePolicy=json.dumps(EXPIRE_UNTAGGED),
        description="every cached repository",
    )
    template = root["repositoryCreationTemplate"]
    assert template["prefix"] == "ROOT"
    assert json.loads(template["lifecyclePolicy"]) == EXPIRE_UNTAGGED
    _valid(
        ecr, "CreateRepositoryCreationTemplate", prefix="other", appliedFor=["PULL_THROUGH_CACHE"]
    )
    changed = _valid(ecr, "UpdateRepositoryCreationTemplate", prefix="other", description="changed")
    assert changed["repositoryCreationTemplate"]["description"] == "changed"
    listed = _valid(ecr, "DescribeRepositoryCreationTemplates")["repositoryCreationTemplates"]
    assert sorted(t["prefix"] for t in listed) == ["ROOT", "other"]
    _valid(ecr, "DeleteRepositoryCreationTemplate", prefix="other")
    assert "TemplateNotFoundException" in _error(
        ecr, "UpdateRepositoryCreationTemplate", prefix="other", description="gone"
    )

    # The scanning configuration.
    scanning = {
        "scanType": "BASIC",
        "rules": [
            {
                "scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": "hub/*", "filterType": "WILDCARD"}],
            }
        ],
    }
    put = _valid(ecr, "PutRegistryScanningConfiguration", **scanning)
    assert put["registryScanningConfiguration"] == scanning
    got = _valid(ecr, "GetRegistryScanningConfiguration")
    assert got["scanningConfiguration"] == scanning and got["registryId"] == account

    # Logging in, and what a pull through the new rule caches.
    login = _valid(ecr, "GetAuthorizationToken")["authorizationData"][0]
    username, _, token = base64.b64decode(login["authorizationToken"]).decode().partition(":")
    assert username == "AWS"
    image = fixture_images.oci_app
    repository = "hub/" + image.reference.split(":")[0]
    tag = image.reference.split(":")[1]
    fetched = _valid(ecr, "BatchGetImage", repositoryName=repository, imageIds=[{"imageTag": tag}])
    [got_image] = fetched["images"]
    assert got_image["imageId"] == {"imageTag": tag, "imageDigest": image.digest}
    content = got_image["imageManifest"].encode()
    assert "sha256:" + hashlib.sha256(content).hexdigest() == image.digest
    missing = _valid(
        ecr, "BatchGetImage", repositoryName=repository, imageIds=[{"imageTag": "no-such-tag"}]
    )
    assert missing["failures"][0]["failureCode"] == "ImageNotFound"
    authfile = tmp_path / "auth.json"
    logged_in = skopeo(
        "login",
        f"--authfile={authfile}",
        "--tls-verify=false",
        "-u",
        "AWS",
        "--password-stdin",
        cache.server.host,
        stdin=token,
    )
    assert logged_in.returncode == 0, logged_in.stderr
    copied = skopeo(
        "--insecure-policy",
        "copy",
        f"--authfile={authfile}",
        "--src-tls-verify=false",
        f"docker://{cache.server.host}/{repository}:{tag}",
        f"dir:{tmp_path / 'copy'}",
    )
    assert copied.returncode == 0, copied.stderr
    assert {b.digest for b in image.blobs} <= verified_dir_digests(tmp_path / "copy")

    repositories = _valid(ecr, "DescribeRepositories", repositoryNames=[repository])
    [described_repository] = repositories["repositories"]
    assert described_repository["repositoryUri"] == f"{cache.server.host}/{repository}"
    assert described_repository["repositoryArn"] == (
        f"arn:aws:ecr:us-east-1:{account}:repository/{repository}"
    )
    assert "RepositoryNotFoundException" in _error(
        ecr, "DescribeRepositories", repositoryNames=["hub/none"]
    )
    ids = _valid(ecr, "ListImages", repositoryName=repository)["imageIds"]
    assert ids == [{"imageDigest": image.digest, "imageTag": tag}]
    details = _valid(ecr, "DescribeImages", repositoryName=repository)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(image.digest, [tag])]
    layer = image.blobs[-1]
    availability = _valid(
        ecr,
        "BatchCheckLayerAvailability",
        repositoryName=repository,
        layerDigests=[layer.digest, "sha256:" + "0" * 64, "nonsense"],
    )
    assert [(x["layerDigest"], x["layerAvailability"]) for x in availability["layers"]] == [
        (layer.digest, "AVAILABLE"),
        ("sha256:" + "0" * 64, "UNAVAILABLE"),
    ]
    assert availability["failures"][0]["failureCode"] == "InvalidLayerDigest"
    download = _valid(
        ecr, "GetDownloadUrlForLayer", repositoryName=repository, layerDigest=layer.digest
    )
    blob = httpx.get(download["downloadUrl"], auth=("AWS", token), timeout=30)
    assert blob.status_code == 200
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer.digest

    # Scans: started on demand, their findings in ECR's shape once done (no advisories here).
    scan = _valid(ecr, "StartImageScan", repositoryName=repository, imageId={"imageTag": tag})
    assert scan["imageId"] == {"imageDigest": image.digest, "imageTag": tag}
    assert scan["imageScanStatus"]["status"] in ("PENDING", "IN_PROGRESS", "COMPLETE")
    deadline = time.monotonic() + 120
    while True:
        findings = _valid(
            ecr, "DescribeImageScanFindings", repositoryName=repository, imageId={"imageTag": tag}
        )
        if findings["imageScanStatus"]["status"] not in ("PENDING", "IN_PROGRESS"):
            break
        assert time.monotonic() < deadline, "the scan did not end"
        time.sleep(0.2)
    assert findings["imageScanStatus"]["status"] == "COMPLETE", findings["imageScanStatus"]
    assert findings["imageScanFindings"]["findings"] == []
    assert "ImageNotFoundException" in _error(
        ecr,
        "DescribeImageScanFindings",
        repositoryName=repository,
        imageId={"imageDigest": "sha256:" + "1" * 64},
    )

    # Lifecycle policies: the ROOT template's was copied onto the new repository.
    policy = _valid(ecr, "GetLifecyclePolicy", repositoryName=repository)
    assert json.loads(policy["lifecyclePolicyText"]) == EXPIRE_UNTAGGED
    # A second image in the repository, cached after the first: the newest one is kept.
    newer = fixture_images.artifact
    _valid(
        ecr, "BatchGetImage", repositoryName=repository, imageIds=[{"imageDigest": newer.digest}]
    )
    _valid(
        ecr,
        "PutLifecyclePolicy",
        repositoryName=repository,
        lifecyclePolicyText=json.dumps(KEEP_NEWEST),
    )
    started = _valid(ecr, "StartLifecyclePolicyPreview", repositoryName=repository)
    assert json.loads(started["lifecyclePolicyText"]) == KEEP_NEWEST
    preview = _valid(ecr, "GetLifecyclePolicyPreview", repositoryName=repository)
    assert [r["imageDigest"] for r in preview["previewResults"]] == [image.digest]
    assert preview["summary"]["expiringImageTotalCount"] == 1
    _valid(ecr, "DeleteLifecyclePolicy", repositoryName=repository)
    assert "LifecyclePolicyNotFoundException" in _error(
        ecr, "GetLifecyclePolicy", repositoryName=repository
    )
    assert _valid(ecr, "ListImages", repositoryName=repository)[
        "imageIds"
    ]  # a preview expires nothing

    deleted = _valid(ecr, "DeletePullThroughCacheRule", ecrRepositoryPrefix="hub")
    assert deleted["credentialArn"] == arn
    assert _valid(secrets, "DeleteSecret", SecretId=arn)["Name"] == name
    assert "ResourceNotFoundException" in _error(secrets, "DescribeSecret", SecretId=name)

    # The registry policy, last: deleting it takes the admin's own grant away.
    document = {"Version": "2012-10-17", "Statement": [ADMINS, ACME_PULLS]}
    stored = _valid(ecr, "PutRegistryPolicy", policyText=json.dumps(document))
    assert json.loads(stored["policyText"])["Statement"][1]["Sid"] == "AcmePullsThroughTheCache"
    assert _valid(ecr, "GetRegistryPolicy")["policyText"] == stored["policyText"]
    assert "InvalidParameterException" in _error(
        ecr, "PutRegistryPolicy", policyText=json.dumps({"Statement": "nonsense"})
    )
    _valid(ecr, "DeleteRegistryPolicy")
    assert "AccessDeniedException" in _error(ecr, "GetRegistryPolicy")  # the default applies
