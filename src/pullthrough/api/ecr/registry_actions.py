"""ECR's registry-wide actions over pullthrough's own services: pull-through cache rules (the
rule store and the rule check the admin API uses), the registry policy, the scanning
configuration, repository creation templates, and GetAuthorizationToken (a login token)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError
from pullthrough.access.rule_credentials import SecretMissing
from pullthrough.access.secrets import SecretError
from pullthrough.api.admin.models import RuleInput, ScanningInput, TemplateInput
from pullthrough.api.ecr.call import Body, Call, Operation, Reply
from pullthrough.api.ecr.errors import AwsError, invalid_parameter
from pullthrough.api.ecr.shapes import member, page, secret_arn, secret_name, text, texts
from pullthrough.cache.rule_check import check_rule
from pullthrough.config import RuleConfig
from pullthrough.metadata.revisions import propagated
from pullthrough.metadata.rules import RuleConflict, StoredRule
from pullthrough.metadata.scanning import RepositoryFilter, ScanningRule
from pullthrough.metadata.templates import CreationTemplate

M = TypeVar("M", bound=BaseModel)

# ECR's names for the registries it knows, by host, for `upstreamRegistry`.
_KNOWN_UPSTREAMS = {
    "registry-1.docker.io": "docker-hub",
    "ghcr.io": "github-container-registry",
    "quay.io": "quay",
    "registry.k8s.io": "k8s",
    "public.ecr.aws": "ecr-public",
    "registry.gitlab.com": "gitlab-container-registry",
}


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """`data` through the admin API's own input model: the same checks, the same words."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise invalid_parameter(f"Invalid parameter: {problems}") from None


# -- pull-through cache rules -----------------------------------------------------------------


def _upstream_url(given: str) -> str:
    """ECR takes a host (`registry-1.docker.io`); a URL with its scheme is kept as it is, so a
    plain-HTTP registry (`http://127.0.0.1:5001`) can be named too."""
    return given if "://" in given else f"https://{given}"


def _shown_url(upstream: str) -> str:
    return upstream.removeprefix("https://")


def _rule(call: Call, stored: StoredRule, *, with_times: bool = True) -> Reply:
    rule = stored.rule
    reply: Reply = {
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": _shown_url(rule.upstream),
        "registryId": call.aws.account_id,
    }
    known = _KNOWN_UPSTREAMS.get(urlsplit(rule.upstream).netloc)
    if known is not None:
        reply["upstreamRegistry"] = known
    if rule.credential is not None:
        reply["credentialArn"] = secret_arn(call.aws, rule.credential)
    if rule.upstream_namespace is not None:
        reply["upstreamRepositoryPrefix"] = rule.upstream_namespace
    if with_times:
        reply["createdAt"] = stored.created_at
    return reply


async def _stored_rule(call: Call, prefix: str) -> StoredRule:
    stored = await call.services.rules.store.get(prefix)
    if stored is None:
        raise AwsError(
            "PullThroughCacheRuleNotFoundException",
            f"The pull through cache rule with prefix '{prefix[:255]}' does not exist in the "
            f"registry with id '{call.aws.account_id}'",
        )
    return stored


async def _require_secret(call: Call, rule: RuleConfig) -> None:
    """As the admin API: a rule may name only a secret the server has."""
    try:
        await call.services.cache.upstreams.credential_now(rule)
    except SecretMissing as exc:
        raise AwsError(
            "SecretNotFoundException",
            f"The secret {exc.name!r} named by credentialArn does not exist: create it first",
        ) from None
    except SecretError as exc:
        raise AwsError("UnableToDecryptSecretValueException", str(exc)) from None


def _credential(body: Body) -> str | None:
    arn = member(body, "credentialArn", str)
    return None if arn is None else secret_name(arn)


async def create_pull_through_cache_rule(call: Call, body: Body) -> Reply:
    for unsupported in ("customRoleArn",):
        if body.get(unsupported):
            raise invalid_parameter(f"Invalid parameter: {unsupported} is not supported here")
    fields: dict[str, Any] = {
        "prefix": text(body, "ecrRepositoryPrefix"),
        "upstream": _upstream_url(text(body, "upstreamRegistryUrl")),
    }
    credential = _credential(body)
    if credential is not None:
        fields["credential"] = credential
    namespace = member(body, "upstreamRepositoryPrefix", str)
    if namespace and namespace != "ROOT":
        fields["upstream_namespace"] = namespace
    settings = validated(RuleInput, fields).model_dump(exclude_unset=True)
    config = RuleConfig.model_validate(settings)
    await _require_secret(call, config)
    book = call.services.rules
    try:
        stored = await book.store.create(config)
    except RuleConflict as exc:
        raise AwsError("PullThroughCacheRuleAlreadyExistsException", str(exc)) from None
    book.invalidate()
    return _rule(call, stored)


async def describe_pull_through_cache_rules(call: Call, body: Body) -> Reply:
    stored = sorted(await call.services.rules.store.all(), key=lambda s: s.rule.prefix)
    wanted = texts(body, "ecrRepositoryPrefixes")
    if wanted is not None:
        by_prefix = {s.rule.prefix: s for s in stored}
        stored = [by_prefix.get(p) or await _stored_rule(call, p) for p in wanted]
    chunk, next_token = page(stored, body)
    rules = [{**_rule(call, s), "updatedAt": s.updated_at} for s in chunk]
    reply: Reply = {"pullThroughCacheRules": rules}
    if next_token:
        reply["nextToken"] = next_token
    return reply


async def update_pull_through_cache_rule(call: Call, body: Body) -> Reply:
    stored = await _stored_rule(call, text(body, "ecrRepositoryPrefix"))
    credential = _credential(body)
    config = RuleConfig.model_validate({**stored.rule.model_dump(), "credential": credential})
    await _require_secret(call, config)
    book = call.services.rules
    try:
        updated, _ = await book.store.put(config)
    except RuleConflict as exc:
        raise invalid_parameter(str(exc)) from None
    book.invalidate()
    reply = _rule(call, updated, with_times=False)
    reply.pop("upstreamRegistryUrl")
    reply.pop("upstreamRegistry", None)
    return {**reply, "updatedAt": updated.updated_at}


async def delete_pull_through_cache_rule(call: Call, body: Body) -> Reply:
    stored = await _stored_rule(call, text(body, "ecrRepositoryPrefix"))
    book = call.services.rules
    await book.store.delete(stored.rule.prefix)
    book.invalidate()
    reply = _rule(call, stored)
    reply.pop("upstreamRegistry", None)
    return reply


async def validate_pull_through_cache_rule(call: Call, body: Body) -> Reply:
    stored = await _stored_rule(call, text(body, "ecrRepositoryPrefix"))
    check = await check_rule(call.services.cache.upstreams, stored.rule, None)
    reply = _rule(call, stored, with_times=False)
    reply.pop("upstreamRegistry", None)
    reply["isValid"] = check.ok
    if not check.ok:
        reply["failure"] = check.message
    return reply


# -- the registry policy ----------------------------------------------------------------------


async def put_registry_policy(call: Call, body: Body) -> Reply:
    try:
        policy = PolicyDocument.parse(text(body, "policyText"))
    except PolicyError as exc:
        raise invalid_parameter(
            f"Invalid parameter at 'PolicyText' failed to satisfy constraint: {exc}"
        ) from None
    document = json.dumps(policy.to_json())
    await call.services.policy.put_policy(document)
    await propagated()  # every worker decides by it when the call returns, as the admin API
    return {"registryId": call.aws.account_id, "policyText": document}


async def _policy_text(call: Call) -> str:
    stored = await call.services.policy.policy()
    if stored is None:
        raise AwsError(
            "RegistryPolicyNotFoundException",
            f"Registry policy does not exist in the registry with id '{call.aws.account_id}' "
            "(the built-in default applies)",
        )
    return stored[0]


async def get_registry_policy(call: Call, body: Body) -> Reply:
    return {"registryId": call.aws.account_id, "policyText": await _policy_text(call)}


async def delete_registry_policy(call: Call, body: Body) -> Reply:
    document = await _policy_text(call)
    await call.services.policy.delete_policy()
    await propagated()
    return {"registryId": call.aws.account_id, "policyText": document}


# -- the scanning configuration ---------------------------------------------------------------


def _scanning(call: Call, configuration: Any) -> Reply:
    return {
        "scanType": configuration.scan_type,
        "rules": [
            {
                "scanFrequency": rule.scan_frequency,
                "repositoryFilters": [
                    {"filter": f.filter, "filterType": f.filter_type}
                    for f in rule.repository_filters
                ],
            }
            for rule in configuration.rules
        ],
    }


async def put_registry_scanning_configuration(call: Call, body: Body) -> Reply:
    rules = member(body, "rules", list) or []
    data = {
        "scan_type": member(body, "scanType", str) or "BASIC",
        "rules": [
            {
                "scan_frequency": r.get("scanFrequency") if isinstance(r, dict) else None,
                "repository_filters": [
                    {"filter": f.get("filter"), "filter_type": f.get("filterType")}
                    if isinstance(f, dict)
                    else f
                    for f in (r.get("repositoryFilters") or [] if isinstance(r, dict) else [])
                ],
            }
            for r in rules
        ],
    }
    wanted = validated(ScanningInput, data)
    store = call.services.scanning
    # Only what ECR's call says changes; pullthrough's own settings (the gates) stay.
    configuration = dataclasses.replace(
        await store.get(),
        scan_type=wanted.scan_type,
        rules=tuple(
            ScanningRule(
                scan_frequency=rule.scan_frequency,
                repository_filters=tuple(
                    RepositoryFilter(f.filter, f.filter_type) for f in rule.repository_filters
                ),
            )
            for rule in wanted.rules
        ),
    )
    saved = await store.put(configuration)
    return {"registryScanningConfiguration": _scanning(call, saved)}


async def get_registry_scanning_configuration(call: Call, body: Body) -> Reply:
    configuration = await call.services.scanning.get()
    return {
        "registryId": call.aws.account_id,
        "scanningConfiguration": _scanning(call, configuration),
    }


# -- repository creation templates ------------------------------------------------------------

_FIXED_TEMPLATE_SETTINGS = {
    # What every repository here is: tags follow upstream, blobs are stored as they are.
    "imageTagMutability": "MUTABLE",
    "encryptionConfiguration": {"encryptionType": "AES256"},
}


def _template(call: Call, template: CreationTemplate) -> Reply:
    reply: Reply = {
        "prefix": template.prefix,
        "appliedFor": list(template.applied_for),
        **_FIXED_TEMPLATE_SETTINGS,
        "createdAt": template.created_at,
        "updatedAt": template.updated_at,
    }
    if template.description is not None:
        reply["description"] = template.description
    if template.lifecycle_policy is not None:
        reply["lifecyclePolicy"] = template.lifecycle_policy
    return reply


def _template_input(body: Body, current: CreationTemplate | None) -> TemplateInput:
    mutability = member(body, "imageTagMutability", str)
    if mutability not in (None, "MUTABLE"):
        raise invalid_parameter(
            "Invalid parameter: imageTagMutability MUTABLE only: a cache follows upstream's tags"
        )
    encryption = member(body, "encryptionConfiguration", dict)
    if encryption is not None and encryption.get("encryptionType") != "AES256":
        raise invalid_parameter("Invalid parameter: encryptionConfiguration AES256 only")
    for unsupported in ("repositoryPolicy", "customRoleArn", "resourceTags"):
        if body.get(unsupported):
            raise invalid_parameter(f"Invalid parameter: {unsupported} is not supported here")
    policy_text = member(body, "lifecyclePolicy", str)
    data: dict[str, Any] = {"prefix": text(body, "prefix")}
    if current is not None:
        data["applied_for"] = list(current.applied_for)
        data["description"] = current.description
        data["scan_on_pull"] = current.scan_on_pull
        if current.lifecycle_policy is not None:
            data["lifecycle_policy"] = json.loads(current.lifecycle_policy)
    if policy_text is not None:
        try:
            data["lifecycle_policy"] = json.loads(policy_text) if policy_text else None
        except ValueError:
            raise invalid_parameter("Invalid parameter: lifecyclePolicy is not JSON") from None
    applied_for = texts(body, "appliedFor")
    if applied_for is not None:
        data["applied_for"] = applied_for
    description = member(body, "description", str)
    if description is not None:
        data["description"] = description or None
    return validated(TemplateInput, data)


async def _find_template(call: Call, prefix: str) -> CreationTemplate | None:
    return next((t for t in await call.services.templates.all() if t.prefix == prefix), None)


async def _saved_template(call: Call, prefix: str) -> CreationTemplate:
    found = await _find_template(call, prefix)
    if found is None:
        raise AwsError(
            "TemplateNotFoundException",
            f"The repository creation template with prefix '{prefix[:255]}' does not exist in "
            f"the registry with id '{call.aws.account_id}'",
        )
    return found


async def _put_template(call: Call, wanted: TemplateInput) -> CreationTemplate:
    policy = wanted.lifecycle_policy
    await call.services.templates.put(
        CreationTemplate(
            prefix=wanted.prefix,
            lifecycle_policy=None if policy is None else json.dumps(policy),
            scan_on_pull=wanted.scan_on_pull,
            description=wanted.description,
            applied_for=tuple(wanted.applied_for),
        )
    )
    return await _saved_template(call, wanted.prefix)


async def create_repository_creation_template(call: Call, body: Body) -> Reply:
    prefix = text(body, "prefix")
    if await _find_template(call, prefix) is not None:
        raise AwsError(
            "TemplateAlreadyExistsException",
            f"The repository creation template with prefix '{prefix[:255]}' already exists",
        )
    template = await _put_template(call, _template_input(body, None))
    return {
        "registryId": call.aws.account_id,
        "repositoryCreationTemplate": _template(call, template),
    }


async def describe_repository_creation_templates(call: Call, body: Body) -> Reply:
    templates = await call.services.templates.all()
    wanted = texts(body, "prefixes")
    if wanted is not None:
        templates = [t for t in templates if t.prefix in wanted]
    chunk, next_token = page(templates, body)
    reply: Reply = {
        "registryId": call.aws.account_id,
        "repositoryCreationTemplates": [_template(call, t) for t in chunk],
    }
    if next_token:
        reply["nextToken"] = next_token
    return reply


async def update_repository_creation_template(call: Call, body: Body) -> Reply:
    current = await _saved_template(call, text(body, "prefix"))
    template = await _put_template(call, _template_input(body, current))
    return {
        "registryId": call.aws.account_id,
        "repositoryCreationTemplate": _template(call, template),
    }


async def delete_repository_creation_template(call: Call, body: Body) -> Reply:
    template = await _saved_template(call, text(body, "prefix"))
    await call.services.templates.delete(template.prefix)
    return {
        "registryId": call.aws.account_id,
        "repositoryCreationTemplate": _template(call, template),
    }


# -- logging in -------------------------------------------------------------------------------


async def get_authorization_token(call: Call, body: Body) -> Reply:
    access, row = call.access, call.principal_row
    if access is None or row is None:
        raise AwsError(
            "InvalidParameterException",
            "authentication is off (auth.enabled: false): clients pull without logging in",
        )
    signer = access.signer
    token = signer.issue(
        call.principal,
        access.config.login_token_ttl,
        stamp=signer.stamp(row.secret_hash),
        purpose="login",
    )
    expires_at = signer.verify(token, "login").expires_at
    return {
        "authorizationData": [
            {
                "authorizationToken": base64.b64encode(f"AWS:{token}".encode()).decode(),
                "expiresAt": expires_at,
                "proxyEndpoint": call.origin,
            }
        ]
    }


OPERATIONS: Mapping[str, Operation] = {
    "CreatePullThroughCacheRule": Operation(create_pull_through_cache_rule),
    "DescribePullThroughCacheRules": Operation(describe_pull_through_cache_rules),
    "UpdatePullThroughCacheRule": Operation(update_pull_through_cache_rule),
    "DeletePullThroughCacheRule": Operation(delete_pull_through_cache_rule),
    "ValidatePullThroughCacheRule": Operation(validate_pull_through_cache_rule),
    "PutRegistryPolicy": Operation(put_registry_policy),
    "GetRegistryPolicy": Operation(get_registry_policy),
    "DeleteRegistryPolicy": Operation(delete_registry_policy),
    "PutRegistryScanningConfiguration": Operation(put_registry_scanning_configuration),
    "GetRegistryScanningConfiguration": Operation(get_registry_scanning_configuration),
    "CreateRepositoryCreationTemplate": Operation(create_repository_creation_template),
    "DescribeRepositoryCreationTemplates": Operation(describe_repository_creation_templates),
    "UpdateRepositoryCreationTemplate": Operation(update_repository_creation_template),
    "DeleteRepositoryCreationTemplate": Operation(delete_repository_creation_template),
    "GetAuthorizationToken": Operation(get_authorization_token),
}
