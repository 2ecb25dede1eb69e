"""The server's Signature Version 4 check (api/ecr/signature.py) against botocore's own signer,
the one the AWS CLI and boto3 use: what botocore signs verifies, and any change to what was
signed (body, header, path, query, secret, scope) is refused with AWS's error."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pullthrough.api.ecr.errors import AwsError
from pullthrough.api.ecr.signature import (
    BAD_SIGNATURE,
    canonical_request,
    check_freshness,
    parse_signed_request,
    verify_signature,
)

KEY_ID = "PTKAEXAMPLEEXAMPLE12"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _signed(
    url: str, body: bytes, headers: Mapping[str, str], service: str = "ecr"
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(KEY_ID, SECRET), service, "eu-west-3").add_auth(request)
    signed = {k: str(v) for k, v in request.headers.items()}
    signed.setdefault("Host", urlsplit(url).netloc)
    return signed


def _verify(url: str, body: bytes, headers: Mapping[str, str], secret: str = SECRET) -> None:
    parts = urlsplit(url)
    signed = parse_signed_request(headers)
    lower = {k.lower(): v for k, v in headers.items()}
    canonical = canonical_request(
        "POST",
        parts.path or "/",
        parts.query,
        lambda n: [lower[n]] if n in lower else [],
        signed.signed_headers,
        body,
    )
    verify_signature(secret, signed, canonical)


JSON_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeImages",
}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/",
        "http://127.0.0.1:5000",
        "http://localhost:8080/some/path",
        "http://127.0.0.1:5000/?b=2&a=1&a=0&empty=",
        "http://127.0.0.1:5000/a%20b/c~d?x=%2Fy",
    ],
)
def test_what_botocore_signs_verifies(url: str) -> None:
    body = b'{"repositoryName": "docker-hub/library/nginx"}'
    _verify(url, body, _signed(url, body, JSON_HEADERS))


def test_a_changed_body_header_secret_or_path_is_refused_with_awss_message() -> None:
    url = "http://127.0.0.1:5000/"
    body = b'{"repositoryName": "a"}'
    headers = _signed(url, body, JSON_HEADERS)
    changes: list[Callable[[], None]] = [
        lambda: _verify(url, b'{"repositoryName": "b"}', headers),
        lambda: _verify(url, body, {**headers, "X-Amz-Target": "x.DeleteRegistryPolicy"}),
        lambda: _verify(url, body, headers, secret=SECRET + "x"),
        lambda: _verify("http://127.0.0.1:5000/other", body, headers),
        lambda: _verify(url, body, {**headers, "Host": "127.0.0.1:5001"}),
    ]
    for changed in changes:
        with pytest.raises(AwsError) as caught:
            changed()
        assert caught.value.code == "InvalidSignatureException"
        assert caught.value.message == BAD_SIGNATURE


def test_the_query_protocols_form_body_verifies() -> None:
    url = "http://127.0.0.1:5000/"
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    headers = _signed(
        url, body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, "sts"
    )
    _verify(url, body, headers)
    assert parse_signed_request(headers).service == "sts"


def test_a_request_older_or_newer_than_15_minutes_is_refused_like_aws() -> None:
    headers = _signed("http://127.0.0.1:5000/", b"{}", JSON_HEADERS)
    signed = parse_signed_request(headers)
    check_freshness(signed, signed.signed_at + 14 * 60)
    check_freshness(signed, signed.signed_at - 14 * 60)
    with pytest.raises(AwsError) as stale:
        check_freshness(signed, signed.signed_at + 16 * 60)
    assert stale.value.code == "InvalidSignatureException"
    assert stale.value.message.startswith(
        f"Signature expired: {signed.amz_date} is now earlier than "
    )
    assert stale.value.message.endswith(" - 15 min.)")
    with pytest.raises(AwsError) as early:
        check_freshness(signed, signed.signed_at - 16 * 60)
    assert early.value.message.startswith(f"Signature not yet current: {signed.amz_date}")


def test_malformed_or_missing_authorization_gets_awss_codes() -> None:
    with pytest.raises(AwsError) as missing:
        parse_signed_request({})
    assert missing.value.code == "MissingAuthenticationTokenException"
    headers = _signed("http://127.0.0.1:5000/", b"{}", JSON_HEADERS)
    for broken in (
        {**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=x/y"},
        {**headers, "Authorization": "Basic Zm9vOmJhcg=="},
        {**headers, "X-Amz-Date": "yesterday"},
    ):
        with pytest.raises(AwsError) as caught:
            parse_signed_request(broken)
        assert caught.value.code == "IncompleteSignatureException"
    signed_at = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(calendar.timegm((2026, 1, 2, 0, 0, 0))))
    with pytest.raises(AwsError) as scope:
        parse_signed_request({**headers, "X-Amz-Date": signed_at})
    assert scope.value.code == "InvalidSignatureException"
