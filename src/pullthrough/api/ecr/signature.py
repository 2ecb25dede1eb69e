"""AWS Signature Version 4, checked on the server: the canonical request, the string to sign
and the HMAC chain, written from AWS's specification ("Create a signed AWS API request",
Signature Version 4), and the freshness rule (X-Amz-Date within 15 minutes of the server's
clock). The tests check it against botocore's own signer, as used by the AWS CLI and boto3.

Errors are AWS's: their codes and the wording of their messages, which scripts match on.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from pullthrough.api.ecr.errors import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_PARAMETER = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*(?:,|$)")

BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a request's Authorization header and X-Amz-Date claim."""

    access_key_id: str
    scope_date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    signed_at: float  # X-Amz-Date as UNIX seconds

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/aws4_request"


def parse_signed_request(headers: Mapping[str, str]) -> SignedRequest:
    """The claims of a SigV4 Authorization header; AWS's error when it is missing or
    malformed."""
    header = headers.get("Authorization")
    if not header:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AwsError(
            "IncompleteSignatureException",
            f"Unsupported AWS 'algorithm': '{algorithm[:40]}'; sign with {ALGORITHM}",
        )
    parameters = {m.group(1): m.group(2) for m in _PARAMETER.finditer(rest)}
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if p not in parameters]
    if missing:
        raise AwsError(
            "IncompleteSignatureException",
            f"Authorization header requires '{missing[0]}' parameter. Authorization={header[:200]}",
        )
    parts = parameters["Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AwsError(
            "IncompleteSignatureException",
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got '" + parameters["Credential"][:200] + "'",
        )
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = float(calendar.timegm(time.strptime(amz_date, _AMZ_DATE)))
    except ValueError:
        raise AwsError(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            "header in the form YYYYMMDD'T'HHMMSS'Z'",
        ) from None
    key_id, scope_date, region, service, _ = parts
    if scope_date != amz_date[:8]:
        raise AwsError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date[:16]}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    signed_headers = tuple(parameters["SignedHeaders"].lower().split(";"))
    return SignedRequest(
        key_id,
        scope_date,
        region,
        service,
        signed_headers,
        parameters["Signature"],
        amz_date,
        signed_at,
    )


def check_freshness(signed: SignedRequest, now: float) -> None:
    """Refuse a request signed more than 15 minutes before or after `now`, as AWS does."""
    current = time.strftime(_AMZ_DATE, time.gmtime(now))
    if signed.signed_at < now - MAX_SKEW_SECONDS:
        earliest = time.strftime(_AMZ_DATE, time.gmtime(now - MAX_SKEW_SECONDS))
        raise AwsError(
            "InvalidSignatureException",
            f"Signature expired: {signed.amz_date} is now earlier than {earliest} "
            f"({current} - 15 min.)",
        )
    if signed.signed_at > now + MAX_SKEW_SECONDS:
        latest = time.strftime(_AMZ_DATE, time.gmtime(now + MAX_SKEW_SECONDS))
        raise AwsError(
            "InvalidSignatureException",
            f"Signature not yet current: {signed.amz_date} is still later than {latest} "
            f"({current} + 15 min.)",
        )


def canonical_request(
    method: str,
    raw_path: str,
    query_string: str,
    headers: Mapping[str, str] | Callable[[str], list[str]],
    signed_headers: tuple[str, ...],
    payload: bytes,
) -> str:
    """The canonical request of the specification. `headers(name)` gives every value a header
    has (several lines of one header are joined with commas)."""
    # Services other than S3 encode the path as sent once more (botocore does the same).
    path = quote(raw_path or "/", safe="/~")
    pairs = parse_qsl(query_string, keep_blank_values=True)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))
    values_of = headers if callable(headers) else (lambda name: [headers.get(name, "")])
    lines = [
        f"{name}:{','.join(' '.join(v.split()) for v in values_of(name))}\n"
        for name in signed_headers
    ]
    return "\n".join(
        [
            method,
            path,
            query,
            "".join(lines),
            ";".join(signed_headers),
            hashlib.sha256(payload).hexdigest(),
        ]
    )


def string_to_sign(signed: SignedRequest, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{signed.amz_date}\n{signed.scope}\n{digest}"


def signing_key(secret_access_key: str, signed: SignedRequest) -> bytes:
    key = ("AWS4" + secret_access_key).encode()
    for part in (signed.scope_date, signed.region, signed.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify_signature(secret_access_key: str, signed: SignedRequest, canonical: str) -> None:
    """Return when the signature is the one `secret_access_key` makes; else AWS's error."""
    key = signing_key(secret_access_key, signed)
    expected = hmac.new(key, string_to_sign(signed, canonical).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signed.signature.lower()):
        raise AwsError("InvalidSignatureException", BAD_SIGNATURE)
