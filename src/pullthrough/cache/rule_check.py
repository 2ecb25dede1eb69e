"""Whether a rule's upstream accepts the rule's credential, as ECR's
ValidatePullThroughCacheRule says: real requests to the upstream, with the credential read
afresh and nothing remembered from earlier pulls (no cached token, no known challenge).

Without an image the check is the login a client does: `GET /v2/`, then Basic or a token from
the realm the upstream names. With an image it is a `HEAD` of that manifest, which also shows
that the credential may pull from that repository.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

import aiohttp
from yarl import URL

from pullthrough.access.rule_credentials import SecretMissing
from pullthrough.access.secrets import SecretError
from pullthrough.cache.routing import Router
from pullthrough.cache.upstreams import Upstreams
from pullthrough.config import RuleConfig
from pullthrough.errors import (
    Denied,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    TooManyRequests,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest
from pullthrough.oci.names import TAG_GRAMMAR, is_tag
from pullthrough.upstream.challenge import Challenge, parse_challenges
from pullthrough.upstream.credentials import Credential
from pullthrough.upstream.faults import (
    ERROR_BODY_LIMIT,
    Transient,
    UpstreamName,
    read_at_most,
    translate_exception,
)

CheckResult = Literal[
    "authenticated",  # the upstream accepted the credential
    "anonymous",  # no credential, and the upstream lets anonymous clients in
    "refused",  # the upstream refused the credential (or asks for one the rule lacks)
    "not_found",  # the credential is accepted, but the image is not there
    "secret_missing",  # the rule names a secret nobody has
    "secret_unusable",  # the stored secret cannot be opened
    "unreachable",  # no usable answer from the upstream
]
PASSING: frozenset[CheckResult] = frozenset({"authenticated", "anonymous"})


@dataclass(frozen=True)
class RuleCheck:
    result: CheckResult
    message: str

    @property
    def ok(self) -> bool:
        return self.result in PASSING


@dataclass(frozen=True)
class ImageToCheck:
    """An image under a rule, as the user wrote it after the prefix (`library/nginx:1.27`)."""

    repository: str  # upstream repository, after the rule's namespaces
    reference: str  # tag or digest; `latest` when none was given

    @classmethod
    def parse(cls, rule: RuleConfig, image: str) -> ImageToCheck:
        """NameInvalid for a bad repository name; ValueError for a bad tag or digest."""
        name, reference = image, "latest"
        if "@" in image:
            name, _, reference = image.partition("@")
            if not Digest.is_digest(reference):
                raise ValueError(f"{reference[:100]!r} is not a digest (sha256:<64 hex digits>)")
        elif ":" in image.rpartition("/")[2]:
            name, _, reference = image.rpartition(":")
            if not is_tag(reference):
                raise ValueError(f"{reference[:100]!r} is not a tag ({TAG_GRAMMAR})")
        route = Router([rule]).resolve(f"{rule.prefix}/{name}")
        return cls(route.upstream_repository, reference)


async def check_rule(
    upstreams: Upstreams, rule: RuleConfig, image: ImageToCheck | None
) -> RuleCheck:
    try:
        credential = await upstreams.credential_now(rule)
    except SecretMissing as exc:
        return RuleCheck("secret_missing", str(exc))
    except SecretError as exc:
        return RuleCheck("secret_unusable", str(exc))
    who = f"user {credential.username!r}" if credential is not None else "anonymous access"
    if image is not None:
        return await _head_manifest(upstreams, rule, credential, image, who)
    return await _login(upstreams, rule, credential, who)


async def _head_manifest(
    upstreams: Upstreams,
    rule: RuleConfig,
    credential: Credential | None,
    image: ImageToCheck,
    who: str,
) -> RuleCheck:
    client = upstreams.probe(rule, credential)
    what = f"{image.repository}{'@' if ':' in image.reference else ':'}{image.reference}"
    try:
        head = await client.head_manifest(
            image.repository, image.reference, mediatypes.UPSTREAM_ACCEPT
        )
    except Denied as exc:
        return RuleCheck("refused", exc.message)
    except NameUnknown as exc:
        refused = isinstance(exc.detail, dict) and exc.detail.get("status") == 401
        return RuleCheck("refused" if refused else "not_found", exc.message)
    except ManifestUnknown as exc:
        return RuleCheck("not_found", f"{who} was accepted, but: {exc.message}")
    except (UpstreamUnavailable, UpstreamTimeout, UpstreamInvalid, TooManyRequests) as exc:
        return RuleCheck("unreachable", exc.message)
    except RegistryError as exc:
        return RuleCheck("unreachable", exc.message)
    result: CheckResult = "authenticated" if credential is not None else "anonymous"
    return RuleCheck(
        result, f"upstream {rule.prefix} ({client.host}) let {who} read {what} ({head.digest})"
    )


async def _login(
    upstreams: Upstreams, rule: RuleConfig, credential: Credential | None, who: str
) -> RuleCheck:
    base = URL(rule.upstream.rstrip("/"))
    upstream = UpstreamName(rule.prefix, base.host_port_subcomponent or base.host or "")
    timeouts = upstreams.timeouts
    timeout = aiohttp.ClientTimeout(
        total=timeouts.total_manifest, sock_connect=timeouts.connect, sock_read=timeouts.read
    )
    session = upstreams.session
    ping = base / "v2" / ""
    doing = "checking the rule's credential"
    try:
        status, challenges = await _get(session, ping, None, timeout)
        if status == 200:
            said = (
                f"the rule's credential ({who}) was not needed and so not tried; give an image "
                "to check pulling with it"
                if credential is not None
                else "no credential needed"
            )
            return RuleCheck("anonymous", f"{upstream} answers /v2/ without authentication: {said}")
        if status != 401:
            return RuleCheck("unreachable", f"{upstream} answered {status} to GET /v2/")
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.param("realm")), None)
        if bearer is not None:
            return await _token(session, upstream, base, bearer, credential, who, timeout)
        if not any(c.scheme == "basic" for c in challenges):
            return RuleCheck(
                "unreachable", f"{upstream} answered 401 to GET /v2/ with no challenge to answer"
            )
        if credential is None:
            return RuleCheck(
                "refused", f"{upstream} asks for a credential (Basic) and the rule names none"
            )
        status, _ = await _get(session, ping, _basic(credential), timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        translated = translate_exception(exc, upstream, doing, timeouts)
        error = translated.error if isinstance(translated, Transient) else translated
        return RuleCheck("unreachable", error.message)
    if status == 200:
        return RuleCheck("authenticated", f"{upstream} accepted {who} (Basic)")
    if status in (401, 403):
        return RuleCheck("refused", f"{upstream} refused {who} (Basic, {status})")
    return RuleCheck("unreachable", f"{upstream} answered {status} to GET /v2/ with Basic")


async def _token(
    session: aiohttp.ClientSession,
    upstream: UpstreamName,
    base: URL,
    challenge: Challenge,
    credential: Credential | None,
    who: str,
    limits: aiohttp.ClientTimeout,
) -> RuleCheck:
    """A token without a scope: what `docker login` asks for, and what a token service refuses
    a wrong credential."""
    realm = URL(challenge.param("realm") or "")
    if not realm.absolute or realm.scheme not in ("http", "https"):
        return RuleCheck(
            "unreachable", f"{upstream} names a token realm that is not a URL: {realm}"
        )
    service = challenge.param("service")
    url = realm.update_query({"service": service}) if service else realm
    # As for pulls (upstream/auth.py): a credential goes to an https realm or the upstream's own
    # host, never in clear text to some other host.
    sends = credential is not None and (realm.scheme == "https" or realm.host == base.host)
    if credential is not None and not sends:
        return RuleCheck(
            "refused",
            f"{upstream}: token service {realm} is plain http on another host, so the rule's "
            "credential is not sent to it",
        )
    status, _ = await _get(session, url, _basic(credential) if credential else None, limits)
    if status == 200:
        result: CheckResult = "authenticated" if credential is not None else "anonymous"
        return RuleCheck(result, f"{upstream}: token service {realm.host} accepted {who}")
    if status in (401, 403):
        return RuleCheck(
            "refused", f"{upstream}: token service {realm.host} refused {who} ({status})"
        )
    return RuleCheck("unreachable", f"{upstream}: token service {realm.host} answered {status}")


async def _get(
    session: aiohttp.ClientSession,
    url: URL,
    authorization: str | None,
    limits: aiohttp.ClientTimeout,
) -> tuple[int, list[Challenge]]:
    headers = {"Authorization": authorization} if authorization else {}
    async with session.get(
        url, headers=headers, timeout=limits, max_redirects=5, raise_for_status=False
    ) as response:
        await read_at_most(response, ERROR_BODY_LIMIT)  # a token or an error, nothing large
        return response.status, parse_challenges(response.headers.getall("WWW-Authenticate", []))


def _basic(credential: Credential) -> str:
    # UTF-8, as registries written in Go decode it (the same header pulls send).
    pair = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
