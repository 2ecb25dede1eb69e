"""Requests to the ECR-compatible API that AWS would refuse are refused with AWS's codes and
messages — a bad signature, an unknown key, a stale date, a replayed request — and none of them
changes anything; a deleted key, or its deleted principal, is refused on the next request."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import botocore.auth
import botocore.exceptions
import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.aws_support import AwsKey, Boto3Client, create_access_key, signed_request
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

ECR = "AmazonEC2ContainerRegistry_V20150921"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Admins",
            "Effect": "Allow",
            "Principal": {"User": ["admin"]},
            "Action": "ecr:*",
            "Resource": "*",
        }
    ],
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
    policy.write_text(json.dumps(POLICY))
    cache.server.command("policy", "put", "-f", str(policy))
    return cache


@pytest.fixture
def key(cache: Cache) -> AwsKey:
    return create_access_key(cache.server, "admin")


def _create_rule(cache: Cache, prefix: str) -> bytes:
    body = {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": cache.proxy.url}
    return json.dumps(body).encode()


def _post(cache: Cache, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(cache.server.url + "/", content=body, headers=headers, timeout=30)


def _rules(cache: Cache) -> list[str]:
    listed = httpx.get(cache.url("/api/v1/rules"), auth=("admin", "admin-Secret-1"), timeout=30)
    return sorted(rule["prefix"] for rule in listed.json()["rules"])


def _aws_error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["__type"], body["message"]


def test_bad_signature_unknown_key_stale_date_and_replay_are_refused_and_change_nothing(
    cache: Cache, key: AwsKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{ECR}.CreatePullThroughCacheRule"
    before = _rules(cache)

    wrong_secret = _post(
        cache,
        *signed_request(cache.server.url, key, target, _create_rule(cache, "a"), secret="x" * 40),
    )
    assert _aws_error(wrong_secret) == (
        400,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check "
        "your AWS Secret Access Key and signing method. Consult the service documentation for "
        "details.",
    )
    headers, body = signed_request(cache.server.url, key, target, _create_rule(cache, "b"))
    tampered = _post(cache, headers, _create_rule(cache, "c"))  # another body, same signature
    assert _aws_error(tampered)[1] == "InvalidSignatureException"

    unknown = AwsKey("PTKAUNKNOWNUNKNOWN00", key.secret_access_key)
    refused = _post(
        cache, *signed_request(cache.server.url, unknown, target, _create_rule(cache, "d"))
    )
    assert _aws_error(refused) == (
        400,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )

    real_now = botocore.auth.get_current_datetime  # type: ignore[attr-defined]
    with monkeypatch.context() as patched:
        patched.setattr(
            botocore.auth,
            "get_current_datetime",
            lambda: real_now() - datetime.timedelta(minutes=16),
        )
        stale_headers, stale_body = signed_request(
            cache.server.url, key, target, _create_rule(cache, "e")
        )
    stale = _aws_error(_post(cache, stale_headers, stale_body))
    assert stale[:2] == (400, "InvalidSignatureException")
    assert stale[2].startswith(
        f"Signature expired: {stale_headers['X-Amz-Date']} is now earlier than"
    )
    assert stale[2].endswith(" - 15 min.)")

    no_signature = _post(cache, {"X-Amz-Target": target}, _create_rule(cache, "f"))
    assert _aws_error(no_signature)[1] == "MissingAuthenticationTokenException"

    assert _rules(cache) == before  # none of them changed anything

    headers, body = signed_request(cache.server.url, key, target, _create_rule(cache, "g"))
    first = _post(cache, headers, body)
    assert first.status_code == 200, first.text
    assert first.json()["ecrRepositoryPrefix"] == "g"
    replayed = _aws_error(_post(cache, headers, body))
    assert replayed[:2] == (400, "InvalidSignatureException")
    assert "already been used" in replayed[2]
    assert _rules(cache) == sorted([*before, "g"])


def test_unknown_actions_and_malformed_bodies_get_awss_error_shape(
    cache: Cache, key: AwsKey
) -> None:
    unknown = _post(cache, *signed_request(cache.server.url, key, f"{ECR}.PutImage", b"{}"))
    assert _aws_error(unknown)[:2] == (400, "UnknownOperationException")
    other = _post(
        cache, *signed_request(cache.server.url, key, "DynamoDB_20120810.ListTables", b"{}")
    )
    assert _aws_error(other)[:2] == (400, "UnknownOperationException")
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        target = f"{ECR}.DescribeRepositories"
        malformed = _post(cache, *signed_request(cache.server.url, key, target, body))
        assert _aws_error(malformed)[:2] == (400, "SerializationException")
    wrong_type = _post(
        cache,
        *signed_request(
            cache.server.url, key, f"{ECR}.DescribeRepositories", b'{"repositoryNames": 7}'
        ),
    )
    assert _aws_error(wrong_type)[:2] == (400, "InvalidParameterException")
    sts = _post(
        cache,
        *signed_request(
            cache.server.url, key, None, b"Action=AssumeRole&Version=2011-06-15", service="sts"
        ),
    )
    assert sts.status_code == 400
    assert "<Code>InvalidAction</Code>" in sts.text


def test_a_deleted_key_or_its_deleted_principal_is_refused(cache: Cache, key: AwsKey) -> None:
    client = Boto3Client("ecr", key, cache.server.url)
    assert client.call("DescribePullThroughCacheRules")["pullThroughCacheRules"]
    listed = cache.server.command("access-keys", "list")
    assert f"{key.access_key_id}\tadmin\t" in listed
    assert key.secret_access_key not in listed
    # The key's row is in the database (or its write-ahead log), its secret only sealed.
    stored = b"".join(p.read_bytes() for p in cache.server.data_dir.glob("metadata.sqlite*"))
    assert key.access_key_id.encode() in stored
    assert key.secret_access_key.encode() not in stored
    cache.server.command("access-keys", "delete", key.access_key_id)  # returns once applied
    with pytest.raises(botocore.exceptions.ClientError) as deleted:
        client.call("DescribePullThroughCacheRules")
    assert deleted.value.response["Error"]["Code"] == "UnrecognizedClientException"

    other = create_access_key(cache.server, "admin")
    other_client = Boto3Client("ecr", other, cache.server.url)
    assert other_client.call("DescribePullThroughCacheRules")["pullThroughCacheRules"]
    cache.server.command("users", "delete", "admin")
    with pytest.raises(botocore.exceptions.ClientError) as gone:
        other_client.call("DescribePullThroughCacheRules")
    assert gone.value.response["Error"]["Code"] == "UnrecognizedClientException"
    cache.server.command("users", "add", "admin", stdin="admin-Secret-2")
    with pytest.raises(botocore.exceptions.ClientError) as still:
        other_client.call("DescribePullThroughCacheRules")  # the new admin has no old keys
    assert still.value.response["Error"]["Code"] == "UnrecognizedClientException"
