"""Every admin operation in one table: method, path, handler, body and responses. The routes
and the OpenAPI document are both built from it, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from pullthrough.api.admin import (
    contents,
    login,
    registry_policy,
    rules,
    scanning,
    scans,
    secrets,
    status,
    templates,
)
from pullthrough.api.admin.fields import NAME_PATTERN, SECRET_NAME_PATTERN, TEMPLATE_PREFIX_PATTERN
from pullthrough.api.admin.models import (
    ImageList,
    LoginToken,
    LoginTokenRequest,
    RegistryPolicy,
    Repository,
    RepositoryList,
    Rule,
    RuleCheckResult,
    RuleInput,
    RuleList,
    RuleUpdate,
    Scanning,
    ScanningInput,
    Secret,
    SecretCheck,
    SecretCheckResult,
    SecretList,
    SecretValue,
    StatsReport,
    Status,
    TagList,
    Template,
    TemplateInput,
    TemplateList,
    TemplateUpdate,
    UpstreamList,
)
from pullthrough.api.admin.scan_models import (
    GateOverride,
    GateOverrideList,
    OverrideInput,
    SbomDocument,
    ScanFindings,
    ScanInput,
    ScanSummaryList,
)
from pullthrough.scanning.model import SEVERITIES

API_ROOT = "/api/v1"
POLICY_DOCUMENT = "PolicyDocument"  # a body schema written by hand (fields.py), not a model

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Parameter:
    name: str
    location: Literal["path", "query"]
    schema: Mapping[str, Any]
    description: str
    required: bool = True


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # under API_ROOT, with {name} placeholders
    handler: Handler
    summary: str
    tag: str
    responses: Mapping[int, type[BaseModel] | None]  # successes; None: no body
    body: type[BaseModel] | str | None = None
    parameters: tuple[Parameter, ...] = ()
    errors: tuple[int, ...] = ()  # besides those the shape of the operation implies
    description: str = ""
    admin_only: bool = True  # False: the handler decides who may call it

    @property
    def operation_id(self) -> str:
        head, *rest = self.handler.__name__.split("_")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def error_statuses(self) -> tuple[int, ...]:
        """Every error status the operation can answer with."""
        statuses = {401, 403, 405, *self.errors}
        if self.body is not None:
            statuses |= {400, 413, 415}
        if any(p.location == "query" for p in self.parameters):
            statuses.add(400)
        return tuple(sorted(statuses))


def _path(name: str, pattern: str, description: str) -> Parameter:
    schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern}
    return Parameter(name, "path", schema, description)


_RULE_PREFIX = _path(
    "prefix", NAME_PATTERN, "A rule's prefix, URL-encoded as one segment (`ghcr%2Forg`)."
)
_SECRET_NAME = _path(
    "name", SECRET_NAME_PATTERN, "A secret's name, URL-encoded (`pullthrough%2Fdocker-hub`)."
)
_TEMPLATE_PREFIX = _path(
    "prefix", TEMPLATE_PREFIX_PATTERN, "ROOT, or a repository name prefix, URL-encoded."
)
_REPOSITORY_NAME = _path("name", NAME_PATTERN, "A repository's name, URL-encoded.")
_REPOSITORY_QUERY = Parameter(
    "repository",
    "query",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NAME_PATTERN},
    "The repository, e.g. docker-hub/library/nginx.",
)

_REFERENCE_QUERY = Parameter(
    "reference",
    "query",
    {"type": "string", "minLength": 1, "maxLength": 200},
    "A tag or a digest of the repository.",
)
_DIGEST = Parameter(
    "digest",
    "path",
    {"type": "string", "pattern": scans.DIGEST_PATTERN},
    "An image's or index's manifest digest.",
)

OPERATIONS: tuple[Operation, ...] = (
    # rules
    Operation("GET", "/rules", rules.list_rules, "List the rules", "rules", {200: RuleList}),
    Operation(
        "POST",
        "/rules",
        rules.create_rule,
        "Create a rule",
        "rules",
        {201: Rule},
        body=RuleInput,
        errors=(409,),
        description="409 when the prefix exists or the rule would be a second default; 400 "
        "when its credential names a secret neither the store nor the server's environment has.",
    ),
    Operation(
        "GET",
        "/rules/{prefix}",
        rules.get_rule,
        "Get a rule",
        "rules",
        {200: Rule},
        parameters=(_RULE_PREFIX,),
        errors=(404,),
    ),
    Operation(
        "PUT",
        "/rules/{prefix}",
        rules.put_rule,
        "Create or replace a rule",
        "rules",
        {200: Rule, 201: Rule},
        body=RuleUpdate,
        parameters=(_RULE_PREFIX,),
        errors=(409,),
        description="200 when replaced, 201 when created; every worker uses it within a second. "
        "400 when its credential names a secret neither the store nor the environment has.",
    ),
    Operation(
        "POST",
        "/rules/{prefix}/check",
        rules.check_rule_upstream,
        "Check that the rule authenticates upstream",
        "rules",
        {200: RuleCheckResult},
        parameters=(
            _RULE_PREFIX,
            Parameter(
                "image",
                "query",
                {"type": "string", "minLength": 1, "maxLength": rules.IMAGE_MAX_LENGTH},
                "An image under the rule (`library/nginx:1.27`): HEAD its manifest upstream "
                "instead of only logging in.",
                required=False,
            ),
        ),
        errors=(404,),
        description="As ECR's ValidatePullThroughCacheRule: real requests to the upstream with "
        "the rule's credential read afresh (`GET /v2/` and Basic or a token without a scope, or "
        "a HEAD of the image's manifest). The answer is 200 whatever the upstream said: `ok` and "
        "`result` say whether it authenticated.",
    ),
    Operation(
        "DELETE",
        "/rules/{prefix}",
        rules.delete_rule,
        "Delete a rule",
        "rules",
        {204: None},
        parameters=(_RULE_PREFIX,),
        errors=(404,),
    ),
    # secrets
    Operation(
        "GET",
        "/secrets",
        secrets.list_secrets,
        "List secrets (names only)",
        "secrets",
        {200: SecretList},
    ),
    Operation(
        "GET",
        "/secrets/{name}",
        secrets.get_secret,
        "Get a secret's name and times",
        "secrets",
        {200: Secret},
        parameters=(_SECRET_NAME,),
        errors=(404,),
    ),
    Operation(
        "PUT",
        "/secrets/{name}",
        secrets.put_secret,
        "Store a secret (write-only)",
        "secrets",
        {200: Secret, 201: Secret},
        body=SecretValue,
        parameters=(_SECRET_NAME,),
        errors=(404, 409),
        description="The value never comes back; 409 when the secret key cannot be used.",
    ),
    Operation(
        "DELETE",
        "/secrets/{name}",
        secrets.delete_secret,
        "Delete a secret",
        "secrets",
        {204: None},
        parameters=(_SECRET_NAME,),
        errors=(404,),
    ),
    Operation(
        "POST",
        "/secret-checks",
        secrets.check_secret,
        "Compare a stored secret with a value",
        "secrets",
        {200: SecretCheckResult},
        body=SecretCheck,
        errors=(404, 409),
        description="Says whether the stored value equals the one sent, and nothing else.",
    ),
    # registry policy
    Operation(
        "GET",
        "/registry-policy",
        registry_policy.get_policy,
        "Get the registry policy",
        "policy",
        {200: RegistryPolicy},
    ),
    Operation(
        "PUT",
        "/registry-policy",
        registry_policy.put_policy,
        "Replace the registry policy",
        "policy",
        {200: RegistryPolicy},
        body=POLICY_DOCUMENT,
        description="400 names the statement and field at fault.",
    ),
    Operation(
        "DELETE",
        "/registry-policy",
        registry_policy.delete_policy,
        "Remove the registry policy (the default applies)",
        "policy",
        {204: None},
    ),
    # login tokens
    Operation(
        "POST",
        "/login-token",
        login.create_login_token,
        "Get your own login token",
        "access",
        {200: LoginToken},
        body=LoginTokenRequest,
        errors=(409,),
        admin_only=False,
        description="Any principal, logged in with their own password or API key (not a token: "
        "403), gets a short-lived token for `docker login --password-stdin`, as `aws ecr "
        "get-login-password`. 409 when authentication is off.",
    ),
    # creation templates
    Operation(
        "GET",
        "/templates",
        templates.list_templates,
        "List creation templates",
        "templates",
        {200: TemplateList},
    ),
    Operation(
        "POST",
        "/templates",
        templates.create_template,
        "Create a creation template",
        "templates",
        {201: Template},
        body=TemplateInput,
        errors=(404, 409),
    ),
    Operation(
        "GET",
        "/templates/{prefix}",
        templates.get_template,
        "Get a creation template",
        "templates",
        {200: Template},
        parameters=(_TEMPLATE_PREFIX,),
        errors=(404,),
    ),
    Operation(
        "PUT",
        "/templates/{prefix}",
        templates.put_template,
        "Create or replace a creation template",
        "templates",
        {200: Template, 201: Template},
        body=TemplateUpdate,
        parameters=(_TEMPLATE_PREFIX,),
        errors=(404,),
    ),
    Operation(
        "DELETE",
        "/templates/{prefix}",
        templates.delete_template,
        "Delete a creation template",
        "templates",
        {204: None},
        parameters=(_TEMPLATE_PREFIX,),
        errors=(404,),
    ),
    # scanning
    Operation(
        "GET",
        "/scanning",
        scanning.get_scanning,
        "Get the scanning configuration",
        "scanning",
        {200: Scanning},
    ),
    Operation(
        "PUT",
        "/scanning",
        scanning.put_scanning,
        "Replace the scanning configuration",
        "scanning",
        {200: Scanning},
        body=ScanningInput,
    ),
    # scans, findings and the gate
    Operation(
        "POST",
        "/scans",
        scans.start_scan,
        "Scan an image (every platform of an index)",
        "scanning",
        {202: ScanFindings},
        body=ScanInput,
        errors=(404, 409),
        description="Queues a scan of the image a tag or digest names (fetched through the "
        "cache when not cached yet) and answers its findings as they are now; GET /findings "
        "shows the result when its status is COMPLETE.",
    ),
    Operation(
        "GET",
        "/findings",
        scans.get_findings,
        "An image's, index's or tag's scan findings",
        "scanning",
        {200: ScanFindings},
        parameters=(
            _REPOSITORY_QUERY,
            _REFERENCE_QUERY,
            Parameter(
                "severity",
                "query",
                {"type": "string", "enum": list(SEVERITIES)},
                "Only findings at this severity or more severe.",
                required=False,
            ),
        ),
        errors=(404, 409),
        description="As ECR's DescribeImageScanFindings, for an index too: every finding lists "
        "the platforms it affects.",
    ),
    Operation(
        "GET",
        "/sbom",
        scans.get_sbom,
        "An image's SBOM (CycloneDX JSON)",
        "scanning",
        {200: SbomDocument},
        parameters=(
            _REPOSITORY_QUERY,
            _REFERENCE_QUERY,
            Parameter(
                "platform",
                "query",
                {"type": "string", "maxLength": 64},
                "For an index: the platform (`linux/arm64`).",
                required=False,
            ),
        ),
        errors=(404, 409),
    ),
    Operation(
        "GET",
        "/scan-summaries",
        scans.list_scan_summaries,
        "Scan status and severity counts of a repository's images",
        "scanning",
        {200: ScanSummaryList},
        parameters=(_REPOSITORY_QUERY,),
        errors=(404, 409),
    ),
    Operation(
        "GET",
        "/gate/overrides",
        scans.list_gate_overrides,
        "List the gate's overrides",
        "scanning",
        {200: GateOverrideList},
        errors=(409,),
    ),
    Operation(
        "PUT",
        "/gate/overrides/{digest}",
        scans.put_gate_override,
        "Let an image through the gate whatever its findings",
        "scanning",
        {200: GateOverride},
        body=OverrideInput,
        parameters=(_DIGEST,),
        errors=(409,),
        description="For an image's or an index's digest; every worker honours it within a second.",
    ),
    Operation(
        "DELETE",
        "/gate/overrides/{digest}",
        scans.delete_gate_override,
        "Remove a gate override",
        "scanning",
        {204: None},
        parameters=(_DIGEST,),
        errors=(400, 404, 409),
    ),
    # cache contents
    Operation(
        "GET",
        "/repositories",
        contents.list_repositories,
        "List cached repositories",
        "contents",
        {200: RepositoryList},
        parameters=(
            Parameter(
                "prefix",
                "query",
                {"type": "string", "maxLength": 255},
                "Only repositories whose name starts with this.",
                required=False,
            ),
            Parameter(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": contents.MAX_LIMIT},
                "At most this many, by name.",
                required=False,
            ),
        ),
    ),
    Operation(
        "GET",
        "/repositories/{name}",
        contents.get_repository,
        "Get a cached repository",
        "contents",
        {200: Repository},
        parameters=(_REPOSITORY_NAME,),
        errors=(404,),
    ),
    Operation(
        "GET",
        "/images",
        contents.list_images,
        "List a repository's images",
        "contents",
        {200: ImageList},
        parameters=(_REPOSITORY_QUERY,),
        errors=(404,),
    ),
    Operation(
        "GET",
        "/tags",
        contents.list_tags,
        "List a repository's tags",
        "contents",
        {200: TagList},
        parameters=(_REPOSITORY_QUERY,),
        errors=(404,),
    ),
    # statistics and upstreams
    Operation(
        "GET", "/stats", status.get_stats, "Cache statistics per rule", "status", {200: StatsReport}
    ),
    Operation(
        "GET",
        "/upstreams",
        status.list_upstreams,
        "Upstream health and rate limits",
        "status",
        {200: UpstreamList},
    ),
    Operation(
        "GET", "/status", status.get_status, "A summary of the cache", "status", {200: Status}
    ),
)
