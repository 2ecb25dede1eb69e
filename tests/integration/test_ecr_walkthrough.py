"""ECR's pull-through cache setup, done against pullthrough with only AWS CLI commands and
skopeo (after the operator gave each person an access key): the upstream credential in Secrets
Manager, the pull-through cache rule, a ROOT creation template with an expiry lifecycle policy,
an organisation's registry policy, the scanning configuration; then `aws ecr
get-login-password | skopeo login --password-stdin -u AWS`, a pull through the prefix from the
real upstream, and the images and their scan findings described."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.aws_support import (
    AWS_CLI,
    AwsKey,
    assert_valid_output,
    cli_env,
    create_access_key,
    run_cli,
)
from tests.integration.cache_setup import start_cache
from tests.rig.pusher import RegistryPusher
from tests.rig.registry import AuthMode, UpstreamRegistry, require_binary
from tests.rig.scan_images import ScanImages, build_scan_images, push_scan_image
from tests.rig.skopeo import SKOPEO_TIMEOUT, verified_dir_digests

pytestmark = pytest.mark.integration

OSV = Path(__file__).parent.parent / "data" / "osv-fixtures"
RESULT_SECONDS = 120.0
EXPIRY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "untagged images go after 14 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        }
    ]
}
REGISTRY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "PlatformTeamAdministers",
            "Effect": "Allow",
            "Principal": {"User": ["admin"]},
            "Action": "ecr:*",
            "Resource": "*",
        },
        {
            "Sid": "AcmePullsThroughTheCache",
            "Effect": "Allow",
            "Principal": {"User": ["*"]},
            "Action": [
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchImportUpstreamImage",
                "ecr:DescribeImages",
                "ecr:DescribeImageScanFindings",
            ],
            "Resource": "arn:aws:ecr:us-east-1:000000000000:repository/hub/*",
            "Condition": {"StringEquals": {"pullthrough:PrincipalOrg": "acme"}},
        },
    ],
}


@pytest.fixture(scope="module")
def scan_images(tmp_path_factory: pytest.TempPathFactory) -> ScanImages:
    return build_scan_images(tmp_path_factory.mktemp("scan-images"))


@pytest.fixture
def pusher(upstreams: dict[AuthMode, UpstreamRegistry]) -> Iterator[RegistryPusher]:
    with RegistryPusher(upstreams["anonymous"].url) as registry:
        yield registry


def _aws(home: Path, key: AwsKey, endpoint: str, *args: str) -> dict[str, Any]:
    result = run_cli(home, key, endpoint, *args)
    assert result.returncode == 0, f"aws {' '.join(args[:2])}: {result.stderr}"
    answer: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
    return answer


def _login(home: Path, key: AwsKey, endpoint: str, host: str, authfile: Path) -> int:
    """`aws ecr get-login-password | skopeo login --password-stdin -u AWS`, in a shell."""
    command = (
        f"{AWS_CLI} ecr get-login-password --endpoint-url {endpoint} | "
        f"{require_binary('skopeo')} login --authfile={authfile} --tls-verify=false "
        f"--password-stdin -u AWS {host}"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=cli_env(home, key),
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    return done.returncode


def _skopeo_copy(authfile: Path, source: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_binary("skopeo"),
            "--insecure-policy",
            "copy",
            f"--authfile={authfile}",
            "--src-tls-verify=false",
            f"docker://{source}",
            f"dir:{dest}",
        ],
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )


def test_the_ecr_setup_with_the_aws_cli_then_login_pull_and_findings(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    pusher: RegistryPusher,
    scan_images: ScanImages,
    tmp_path: Path,
) -> None:
    # The operator: a server with authentication, three people, their access keys, the
    # vulnerability records, and a first policy letting the platform team in.
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}},
    )
    server = cache.server
    for name, org in (("admin", "platform"), ("dora", "acme"), ("eve", "other")):
        server.command("users", "add", name, "--org", org, stdin=f"{name}-Secret-1")
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps({**REGISTRY_POLICY, "Statement": REGISTRY_POLICY["Statement"][:1]})
    )
    server.command("policy", "put", "-f", str(bootstrap))
    server.command("vulndb", "import", str(OSV / "images"))
    keys = {name: create_access_key(server, name) for name in ("admin", "dora", "eve")}
    debian = push_scan_image(pusher, "scan-e2e/debian", "12", scan_images.debian)

    endpoint, host = server.url, server.host
    admin = tmp_path / "admin"

    def aws(*args: str) -> dict[str, Any]:
        return _aws(admin, keys["admin"], endpoint, *args)

    # The platform team's setup, as ECR's guide does it.
    basic = upstreams["basic"]
    assert basic.credentials is not None
    username, password = basic.credentials
    secret = aws(
        "secretsmanager",
        "create-secret",
        "--name",
        "ecr-pullthroughcache/hub",
        "--secret-string",
        json.dumps({"username": username, "accessToken": password}),
    )
    rule = aws(
        "ecr",
        "create-pull-through-cache-rule",
        "--ecr-repository-prefix",
        "hub",
        "--upstream-registry-url",
        basic.url,
        "--credential-arn",
        secret["ARN"],
    )
    assert_valid_output("ecr", "CreatePullThroughCacheRule", rule)
    policy_file = tmp_path / "expiry.json"
    policy_file.write_text(json.dumps(EXPIRY))
    template = aws(
        "ecr",
        "create-repository-creation-template",
        "--prefix",
        "ROOT",
        "--applied-for",
        "PULL_THROUGH_CACHE",
        "--lifecycle-policy",
        f"file://{policy_file}",
    )
    assert_valid_output("ecr", "CreateRepositoryCreationTemplate", template)
    registry_policy = tmp_path / "registry-policy.json"
    registry_policy.write_text(json.dumps(REGISTRY_POLICY))
    aws("ecr", "put-registry-policy", "--policy-text", f"file://{registry_policy}")
    scanning = aws(
        "ecr",
        "put-registry-scanning-configuration",
        "--scan-type",
        "BASIC",
        "--rules",
        json.dumps(
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "hub/*", "filterType": "WILDCARD"}],
                }
            ]
        ),
    )
    assert_valid_output("ecr", "PutRegistryScanningConfiguration", scanning)
    assert aws("ecr", "validate-pull-through-cache-rule", "--ecr-repository-prefix", "hub")[
        "isValid"
    ]

    # A developer of acme logs in with get-login-password and pulls through the prefix.
    dora = tmp_path / "dora"
    authfile = tmp_path / "dora-auth.json"
    assert _login(dora, keys["dora"], endpoint, host, authfile) == 0
    repository = "hub/scan-e2e/debian"
    copied = _skopeo_copy(authfile, f"{host}/{repository}:12", tmp_path / "copy")
    assert copied.returncode == 0, copied.stderr
    digests = verified_dir_digests(tmp_path / "copy")
    assert debian.digest in digests and {b.digest for b in debian.blobs} <= digests

    # Someone of another organisation logs in too, but the policy does not let them pull.
    eve_auth = tmp_path / "eve-auth.json"
    assert _login(tmp_path / "eve", keys["eve"], endpoint, host, eve_auth) == 0
    refused = _skopeo_copy(eve_auth, f"{host}/{repository}:12", tmp_path / "eve-copy")
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower()

    def dora_aws(*args: str) -> dict[str, Any]:
        return _aws(dora, keys["dora"], endpoint, *args)

    images = dora_aws("ecr", "describe-images", "--repository-name", repository)
    assert_valid_output("ecr", "DescribeImages", images)
    assert [(i["imageDigest"], i["imageTags"]) for i in images["imageDetails"]] == [
        (debian.digest, ["12"])
    ]
    lifecycle = aws("ecr", "get-lifecycle-policy", "--repository-name", repository)
    assert json.loads(lifecycle["lifecyclePolicyText"]) == EXPIRY  # from the ROOT template

    deadline = time.monotonic() + RESULT_SECONDS
    while True:
        result = run_cli(
            dora,
            keys["dora"],
            endpoint,
            "ecr",
            "describe-image-scan-findings",
            "--repository-name",
            repository,
            "--image-id",
            "imageTag=12",
        )
        if result.returncode == 0:
            findings = json.loads(result.stdout)
            if findings["imageScanStatus"]["status"] == "COMPLETE":
                break
            assert findings["imageScanStatus"]["status"] in ("PENDING", "IN_PROGRESS"), findings
        else:  # queued a moment after the first pull cached it
            assert "ScanNotFoundException" in result.stderr, result.stderr
        assert time.monotonic() < deadline, "the scan did not complete"
        time.sleep(0.2)
    assert_valid_output("ecr", "DescribeImageScanFindings", findings)
    assert findings["imageId"] == {"imageDigest": debian.digest, "imageTag": "12"}
    found = {f["name"] for f in findings["imageScanFindings"]["findings"]}
    assert {"DSA-9001-1", "DSA-9005-1", "GHSA-9001-aaaa-bbbb", "GHSA-9004-aaaa-bbbb"} <= found
    counts = {"HIGH": 2, "MEDIUM": 3, "LOW": 1}
    assert findings["imageScanFindings"]["findingSeverityCounts"] == counts
    described = dora_aws("ecr", "describe-images", "--repository-name", repository)
    assert_valid_output("ecr", "DescribeImages", described)
    [detail] = described["imageDetails"]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"] == counts
