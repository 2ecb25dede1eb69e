"""The AWS API's one endpoint: `POST /` with `X-Amz-Target` (ECR and Secrets Manager, JSON 1.1)
or a form `Action=…` (STS, Query protocol). Every request is checked in this order: its
Signature Version 4 (signature.py) against the access key's secret, the replay ledger, the
registry policy for the action; only then does the action run, so a request that fails any
check changes nothing.

Replays: AWS refuses a request whose X-Amz-Date is more than 15 minutes off, but accepts the
same signed request again within that window. Here the signature of a request that changes
something (every action but Describe*, Get*, List*, BatchGet*, BatchCheck*, Validate*) is
accepted once: its first use is recorded (in the database, so every worker and replica sees it)
until its window ends, and a second use is refused with InvalidSignatureException. Reads are
not recorded: a replayed read changes nothing, and the same read sent twice in one second (the
signature's resolution) is an ordinary thing for a script to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from pullthrough.access.authn import principal_of
from pullthrough.access.aws_keys import AwsKeyError, AwsKeys
from pullthrough.access.registry_policy.actions import resolve_action
from pullthrough.access.registry_policy.document import ADMIN, ANONYMOUS, REGISTRY_WIDE
from pullthrough.access.sealing import SecretKeySource
from pullthrough.api.access import AccessControl
from pullthrough.api.admin.context import AdminServices
from pullthrough.api.ecr import (
    registry_actions,
    repository_actions,
    scan_actions,
    secretsmanager,
    sts,
)
from pullthrough.api.ecr.call import Call, Operation
from pullthrough.api.ecr.errors import (
    JSON_CONTENT_TYPE,
    AwsError,
    json_error,
    query_error,
)
from pullthrough.api.ecr.shapes import principal_arn
from pullthrough.api.ecr.signature import (
    MAX_SKEW_SECONDS,
    UNKNOWN_KEY,
    SignedRequest,
    canonical_request,
    check_freshness,
    parse_signed_request,
    verify_signature,
)
from pullthrough.api.request_ids import request_id_of
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import Denied
from pullthrough.metadata.aws_keys import SignatureLedger
from pullthrough.metadata.principals import PrincipalRow
from pullthrough.metadata.revisions import Revisions

log = logging.getLogger(__name__)

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921"
SECRETS_TARGET = "secretsmanager"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
READS = ("Describe", "Get", "List", "BatchGet", "BatchCheck", "Validate")
MAX_BODY_BYTES = 1024 * 1024

ECR_OPERATIONS: Mapping[str, Operation] = {
    **registry_actions.OPERATIONS,
    **repository_actions.OPERATIONS,
    **scan_actions.OPERATIONS,
}


def is_aws_request(request: web.Request) -> bool:
    """Whether a `POST /` is for this API (else it is nobody's)."""
    if "X-Amz-Target" in request.headers:
        return True
    return request.content_type == FORM_CONTENT_TYPE and "Authorization" in request.headers


class AwsApi:
    def __init__(self, cache: PullThroughCache, access: AccessControl | None) -> None:
        engine = cache.metadata.engine
        self.services = AdminServices.open(cache, access)
        self.access = access
        self.aws = cache.settings.aws
        self.keys = AwsKeys(
            engine, SecretKeySource(cache.settings.data_dir.resolve()), Revisions(engine)
        )
        self.ledger = SignatureLedger(engine)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = request_id_of(request) or str(uuid.uuid4())
        target = request.headers.get("X-Amz-Target")
        render = json_error if target is not None else query_error
        try:
            return await self._handle(request, target, request_id)
        except AwsError as error:
            return render(error, request_id)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("AWS API error", extra={"request_id": request_id})
            failure = AwsError(
                "ServerException",
                f"internal error; quote request id {request_id} when reporting",
                status=500,
            )
            return render(failure, request_id)

    async def _handle(
        self, request: web.Request, target: str | None, request_id: str
    ) -> web.StreamResponse:
        payload = await _read_body(request)
        if target is None:
            return await self._query(request, payload, request_id)
        service_prefix, _, action = target.partition(".")
        if service_prefix == ECR_TARGET:
            service, operations = "ecr", ECR_OPERATIONS
        elif service_prefix == SECRETS_TARGET:
            service, operations = "secretsmanager", secretsmanager.OPERATIONS
        else:
            raise AwsError("UnknownOperationException", f"unknown X-Amz-Target {target[:120]!r}")
        call = await self._authenticate(request, payload, service)
        body = _json_body(payload)
        operation = operations.get(action)
        if operation is None:
            raise AwsError(
                "UnknownOperationException",
                f"{service} has no operation {action[:80]!r} here (pullthrough implements "
                f"{', '.join(sorted(operations))})",
            )
        if service == "ecr":
            repository = body.get("repositoryName") if operation.per_repository else None
            await self._authorize(call, f"ecr:{action}", repository)
        else:
            await self._require_admin(call, f"{service}:{action}")
        if call.signed is not None and not action.startswith(READS):
            await self._refuse_replay(call.signed)
        reply = await operation.handler(call, body)
        return web.Response(
            body=json.dumps(reply).encode(),
            headers={"Content-Type": JSON_CONTENT_TYPE, "x-amzn-RequestId": request_id},
        )

    async def _query(
        self, request: web.Request, payload: bytes, request_id: str
    ) -> web.StreamResponse:
        call = await self._authenticate(request, payload, "sts")
        form = dict(parse_qsl(payload.decode("utf-8", "replace"), keep_blank_values=True))
        action = form.get("Action", "")
        if action != "GetCallerIdentity":
            raise AwsError(
                "InvalidAction",
                f"Could not find operation {action[:80]} for version "
                f"{form.get('Version', '')[:20]} (pullthrough implements GetCallerIdentity)",
            )
        return web.Response(
            body=sts.caller_identity(call, request_id).encode(),
            headers={"Content-Type": "text/xml", "x-amzn-RequestId": request_id},
        )

    async def _authenticate(self, request: web.Request, payload: bytes, service: str) -> Call:
        origin = f"{request.scheme}://{request.host}"
        if self.access is None:
            # As the admin API: without authentication (loopback only) everyone may.
            return Call(self.services, None, self.aws, ANONYMOUS, None, None, origin, request.host)
        signed = parse_signed_request(request.headers)
        if signed.service != service:
            raise AwsError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{service}'. ",
            )
        check_freshness(signed, time.time())
        try:
            key = await self.keys.find(signed.access_key_id)
        except AwsKeyError as exc:
            log.error("%s", exc)
            raise AwsError("UnrecognizedClientException", UNKNOWN_KEY) from None
        if key is None:
            raise AwsError("UnrecognizedClientException", UNKNOWN_KEY)
        canonical = canonical_request(
            request.method,
            request.raw_path.partition("?")[0],
            request.query_string,
            lambda name: request.headers.getall(name, []),
            signed.signed_headers,
            payload,
        )
        verify_signature(key.secret_access_key, signed, canonical)
        return Call(
            self.services,
            self.access,
            self.aws,
            principal_of(key.principal),
            key.principal,
            key.access_key_id,
            origin,
            request.host,
            signed,
        )

    async def _refuse_replay(self, signed: SignedRequest) -> None:
        if not await self.ledger.first_use(signed.signature, signed.signed_at + MAX_SKEW_SECONDS):
            raise AwsError(
                "InvalidSignatureException",
                "Signature has already been used: this server accepts a signed request once "
                "(sign the request again to repeat it)",
            )

    async def _authorize(self, call: Call, ecr_action: str, repository: object) -> None:
        if self.access is None:
            return
        resource = repository if isinstance(repository, str) and repository else REGISTRY_WIDE
        for action in sorted(resolve_action(ecr_action)):
            await self._require(call, ecr_action, action, resource)

    async def _require_admin(self, call: Call, aws_action: str) -> None:
        if self.access is not None:
            await self._require(call, aws_action, ADMIN, REGISTRY_WIDE)

    async def _require(self, call: Call, aws_action: str, action: str, resource: str) -> None:
        assert self.access is not None
        try:
            await self.access.authorizer.require(call.principal, action, resource)
        except Denied as exc:
            row: PrincipalRow | None = call.principal_row
            who = principal_arn(self.aws, row.kind if row else "user", call.principal.name)
            raise AwsError(
                "AccessDeniedException",
                f"User: {who} is not authorized to perform: {aws_action} on resource: "
                f"{resource} ({exc.message})",
            ) from None


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise AwsError("SerializationException", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AwsError("SerializationException", "the body is too large") from None


def _json_body(payload: bytes) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise AwsError("SerializationException", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AwsError("SerializationException", "the body must be a JSON object")
    return body
