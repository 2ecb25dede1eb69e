"""The part of Secrets Manager that ECR's pull-through cache setup uses, over pullthrough's
secret store: CreateSecret, PutSecretValue, DescribeSecret, ListSecrets, DeleteSecret (and
GetResourcePolicy, which Terraform reads back). Names are the store's (`ecr-pullthroughcache/…`
as ECR requires works as any other); ARNs are made from them. GetSecretValue is refused: values
go into the store and never come out of it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from pullthrough.access.secrets import (
    SecretError,
    SecretListing,
    SecretValueInvalid,
    credential_from_json,
    validate_secret_name,
)
from pullthrough.api.ecr.call import Body, Call, Operation, Reply
from pullthrough.api.ecr.errors import AwsError
from pullthrough.api.ecr.shapes import member, secret_arn, secret_name, text

CURRENT = ["AWSCURRENT"]


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def _not_found() -> AwsError:
    return AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")


async def _listing(call: Call, name: str) -> SecretListing | None:
    return next((s for s in await call.services.secrets.list() if s.name == name), None)


async def _existing(call: Call, body: Body) -> SecretListing:
    found = await _listing(call, secret_name(text(body, "SecretId")))
    if found is None:
        raise _not_found()
    return found


async def _store(call: Call, name: str, body: Body) -> None:
    if member(body, "SecretBinary", str) is not None:
        raise _invalid("SecretBinary is not supported: give SecretString")
    value = text(body, "SecretString")
    try:
        credential = credential_from_json(value)
        await call.services.secrets.put(name, credential)
    except SecretValueInvalid as exc:
        raise _invalid(f"SecretString: {exc}") from None
    except SecretError as exc:
        raise AwsError(
            "InternalServiceError", f"the secret store cannot be used: {exc}", 500
        ) from None


def _version(body: Body) -> str:
    return member(body, "ClientRequestToken", str) or str(uuid.uuid4())


async def create_secret(call: Call, body: Body) -> Reply:
    name = text(body, "Name")
    try:
        validate_secret_name(name)
    except SecretValueInvalid as exc:
        raise _invalid(str(exc)) from None
    if await _listing(call, name) is not None:
        raise AwsError(
            "ResourceExistsException",
            f"The operation failed because the secret {name} already exists.",
        )
    if member(body, "SecretString", str) is None:
        raise _invalid(
            "a secret here always holds a value: give SecretString "
            '({"username": "…", "accessToken": "…"})'
        )
    await _store(call, name, body)
    return {"ARN": secret_arn(call.aws, name), "Name": name, "VersionId": _version(body)}


async def put_secret_value(call: Call, body: Body) -> Reply:
    found = await _existing(call, body)
    await _store(call, found.name, body)
    return {
        "ARN": secret_arn(call.aws, found.name),
        "Name": found.name,
        "VersionId": _version(body),
        "VersionStages": CURRENT,
    }


def _described(call: Call, listing: SecretListing) -> Reply:
    return {
        "ARN": secret_arn(call.aws, listing.name),
        "Name": listing.name,
        "CreatedDate": listing.created_at,
        "LastChangedDate": listing.updated_at,
    }


async def describe_secret(call: Call, body: Body) -> Reply:
    return _described(call, await _existing(call, body))


async def list_secrets(call: Call, body: Body) -> Reply:
    return {"SecretList": [_described(call, s) for s in await call.services.secrets.list()]}


async def delete_secret(call: Call, body: Body) -> Reply:
    found = await _existing(call, body)
    # There is no recovery window: a deleted secret is gone at once, whatever was asked.
    await call.services.secrets.delete(found.name)
    return {
        "ARN": secret_arn(call.aws, found.name),
        "Name": found.name,
        "DeletionDate": found.updated_at,
    }


async def get_resource_policy(call: Call, body: Body) -> Reply:
    found = await _existing(call, body)
    return {"ARN": secret_arn(call.aws, found.name), "Name": found.name}


async def get_secret_value(call: Call, body: Body) -> Reply:
    raise AwsError(
        "AccessDeniedException",
        "pullthrough never returns a secret's value: it goes into the secret store and is only "
        "used to log in upstream (PutSecretValue replaces it; DescribeSecret shows its times)",
    )


OPERATIONS: Mapping[str, Operation] = {
    "CreateSecret": Operation(create_secret),
    "PutSecretValue": Operation(put_secret_value),
    "DescribeSecret": Operation(describe_secret),
    "ListSecrets": Operation(list_secrets),
    "DeleteSecret": Operation(delete_secret),
    "GetResourcePolicy": Operation(get_resource_policy),
    "GetSecretValue": Operation(get_secret_value),
}
