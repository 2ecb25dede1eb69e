"""The admin API's request and response bodies. Inputs refuse unknown fields and values of the
wrong JSON type (no "1" for 1, no 1 for true); outputs list every field, so the OpenAPI
document built from them says exactly what comes back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from pullthrough.api.admin.fields import (
    FILTER_PATTERN,
    TEMPLATE_PREFIX_PATTERN,
    USERNAME_PATTERN,
    DurationInput,
    Host,
    LifecyclePolicyInput,
    NullableDurationInput,
    NullableTime,
    RepositoryName,
    SecretName,
    Time,
    UpstreamUrl,
)
from pullthrough.config import RuleConfig


class Input(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


# -- errors ----------------------------------------------------------------------------------


class FieldError(Output):
    field: str = Field(description="The field at fault as a dotted path: `rules.0.upstream`.")
    message: str


class ErrorBody(Output):
    code: Literal[
        "INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "CONFLICT",
        "TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "INTERNAL",
    ]
    message: str = Field(description="One line that says what went wrong and what to do.")
    fields: list[FieldError]


# -- rules -----------------------------------------------------------------------------------


def _rule_default(name: str) -> Any:
    return RuleConfig.model_fields[name].default


class RuleUpdate(Input):
    """A rule's settings; fields left out take their defaults."""

    prefix: RepositoryName | None = Field(
        default=None, description="Optional here; when given it must be the prefix in the path."
    )
    upstream: UpstreamUrl
    default: bool = Field(
        default=_rule_default("default"),
        description="Names that match no prefix (Docker's registry-mirrors) go to this rule.",
    )
    credential: SecretName | None = Field(
        default=None, description="The name of a stored secret to log in upstream with."
    )
    mirror_of: Annotated[list[Host], Field(max_length=64)] | None = Field(
        default=None,
        description="More hosts this rule answers for in containerd's ?ns= mode; the "
        "upstream's own host (docker.io and its aliases for Docker Hub) always answers too.",
    )
    tag_ttl: DurationInput = Field(default=_rule_default("tag_ttl"))
    max_stale: NullableDurationInput = Field(default=None)
    negative_ttl: DurationInput = Field(default=_rule_default("negative_ttl"))
    upstream_namespace: RepositoryName | None = None
    implicit_namespace: RepositoryName | None = None
    eager_fill: bool = Field(
        default=_rule_default("eager_fill"),
        description="Start fetching an image's config and layers as soon as a client's pull "
        "fetches its manifest from upstream (only the platform the client resolved; never for "
        "a principal without registry:ImportUpstream).",
    )


class RuleInput(RuleUpdate):
    prefix: RepositoryName = Field(
        description="One or more path segments: images are pulled as <server>/<prefix>/<name>."
    )


class Rule(Output):
    prefix: str
    upstream: str
    default: bool
    credential: str | None
    mirror_of: list[str] | None
    tag_ttl: float = Field(description="Seconds.")
    max_stale: float | None = Field(description="Seconds.")
    negative_ttl: float = Field(description="Seconds.")
    upstream_namespace: str | None
    implicit_namespace: str | None
    eager_fill: bool
    cache_prefix_url: str = Field(
        description="Where images come through this rule: `<server host:port>/<prefix>`."
    )
    created_at: Time
    updated_at: Time


class RuleList(Output):
    rules: list[Rule]


class RuleCheckResult(Output):
    prefix: str
    upstream: str
    credential: str | None
    image: str | None = Field(description="The image whose manifest was asked for, if one was.")
    ok: bool = Field(description="Whether pulls through the rule can authenticate upstream.")
    result: Literal[
        "authenticated",
        "anonymous",
        "refused",
        "not_found",
        "secret_missing",
        "secret_unusable",
        "unreachable",
    ] = Field(
        description="authenticated and anonymous (no credential needed or named) are ok; "
        "refused: the upstream refused the credential or wants one the rule lacks; not_found: "
        "the credential was accepted but the image is not there; secret_missing / "
        "secret_unusable: the rule's secret is nowhere / cannot be opened; unreachable: no "
        "usable answer."
    )
    message: str


# -- secrets ---------------------------------------------------------------------------------

Username = Annotated[str, Field(min_length=1, max_length=1024, pattern=USERNAME_PATTERN)]
Token = Annotated[str, Field(min_length=1, max_length=65536)]


def _one_token(schema: dict[str, Any]) -> None:
    # The "" defaults only make the fields optional; as examples they would be refused.
    for name in ("accessToken", "password"):
        schema["properties"][name].pop("default", None)
    schema["oneOf"] = [{"required": ["accessToken"]}, {"required": ["password"]}]


class SecretValue(Input):
    """ECR's secret shape: `username` and `accessToken` (or `password`, not both)."""

    model_config = ConfigDict(json_schema_extra=_one_token)

    username: Username
    accessToken: Token = ""  # the field name ECR's secrets use
    password: Token = ""

    @model_validator(mode="after")
    def _one_token(self) -> SecretValue:
        given = [name for name in ("accessToken", "password") if name in self.model_fields_set]
        if len(given) != 1:
            raise PydanticCustomError(
                "one_token",
                'give "accessToken" (or "password"), exactly one of them',
                {"field": "accessToken"},
            )
        return self

    @property
    def token(self) -> str:
        return self.accessToken or self.password


class SecretCheck(SecretValue):
    name: SecretName


class Secret(Output):
    name: str
    created_at: Time
    updated_at: Time


class SecretList(Output):
    secrets: list[Secret]


class SecretCheckResult(Output):
    name: str
    matches: bool = Field(description="Whether the stored value equals the one sent.")


# -- registry policy -------------------------------------------------------------------------


class RegistryPolicy(Output):
    policy: dict[str, Any] | None = Field(
        description="The stored document in normal form; null when the default policy applies."
    )
    updated_at: NullableTime


# -- creation templates ----------------------------------------------------------------------

AppliedFor = Literal["PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH"]


def _pull_through_cache_only() -> list[AppliedFor]:
    return ["PULL_THROUGH_CACHE"]


TemplatePrefix = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=TEMPLATE_PREFIX_PATTERN,
        description="ROOT, or a repository name prefix such as docker-hub.",
    ),
]


class TemplateUpdate(Input):
    prefix: TemplatePrefix | None = Field(
        default=None, description="Optional here; when given it must be the prefix in the path."
    )
    description: Annotated[str, Field(max_length=256)] | None = None
    applied_for: Annotated[
        list[AppliedFor], Field(min_length=1, max_length=3, json_schema_extra={"uniqueItems": True})
    ] = Field(default_factory=_pull_through_cache_only)
    lifecycle_policy: LifecyclePolicyInput = None
    scan_on_pull: bool = False

    @model_validator(mode="after")
    def _unique(self) -> TemplateUpdate:
        if len(set(self.applied_for)) != len(self.applied_for):
            raise PydanticCustomError("duplicate", "lists a value twice", {"field": "applied_for"})
        return self


class TemplateInput(TemplateUpdate):
    prefix: TemplatePrefix


class Template(Output):
    prefix: str
    description: str | None
    applied_for: list[str]
    lifecycle_policy: dict[str, Any] | None
    scan_on_pull: bool
    created_at: Time
    updated_at: Time


class TemplateList(Output):
    templates: list[Template]


# -- scanning --------------------------------------------------------------------------------

ScanType = Literal["BASIC", "ENHANCED"]
ScanFrequency = Literal["SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"]


class RepositoryFilterInput(Input):
    filter: Annotated[str, Field(pattern=FILTER_PATTERN)]
    filter_type: Literal["WILDCARD"] = "WILDCARD"


class ScanningRuleInput(Input):
    scan_frequency: ScanFrequency
    repository_filters: Annotated[list[RepositoryFilterInput], Field(min_length=1, max_length=100)]


BlockSeverity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]
AdvisoryId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:+-]+$")]


class GatePolicyInput(Input):
    repository_filters: Annotated[list[RepositoryFilterInput], Field(min_length=1, max_length=100)]
    block_severity: BlockSeverity | None = Field(
        default=None, description="Refuse images with a finding this severe or worse."
    )
    allowed: Annotated[list[AdvisoryId], Field(max_length=1000)] = Field(
        default_factory=list, description="Advisory IDs (or aliases) that never refuse an image."
    )
    only_fixable: bool = Field(
        default=False, description="Only findings with a fixed version refuse an image."
    )


class ScanningInput(Input):
    scan_type: ScanType
    rules: Annotated[list[ScanningRuleInput], Field(max_length=100)] = Field(default_factory=list)
    gates: Annotated[list[GatePolicyInput], Field(max_length=100)] = Field(
        default_factory=list,
        description="The gate: in repositories these filters name, an image is scanned before "
        "its manifest is first served, and refused when its findings reach block_severity.",
    )
    gate_wait_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        default=30.0,
        description="How long a pull of a cold image in a gated repository waits for its scan "
        "before it is answered 429 with Retry-After.",
    )


class RepositoryFilterOutput(Output):
    filter: str
    filter_type: Literal["WILDCARD"]


class ScanningRuleOutput(Output):
    scan_frequency: ScanFrequency
    repository_filters: list[RepositoryFilterOutput]


class GatePolicyOutput(Output):
    repository_filters: list[RepositoryFilterOutput]
    block_severity: BlockSeverity | None
    allowed: list[str]
    only_fixable: bool


class Scanning(Output):
    scan_type: ScanType
    rules: list[ScanningRuleOutput]
    gates: list[GatePolicyOutput]
    gate_wait_seconds: float
    updated_at: NullableTime


# -- cache contents --------------------------------------------------------------------------


class Repository(Output):
    name: str
    rule: str = Field(description="The prefix of the rule it was cached through.")
    created_at: Time
    image_count: int
    tag_count: int
    size_bytes: int = Field(description="Stored blobs its manifests reference, each once.")
    last_pulled_at: NullableTime
    pull_count: int = Field(description="Manifest requests through it.")


class RepositoryList(Output):
    repositories: list[Repository]


class Image(Output):
    repository: str
    digest: str
    media_type: str
    size_bytes: int
    tags: list[str]
    platforms: list[str] = Field(description="`os/architecture[/variant]`, as far as known.")
    cached_at: Time
    last_pulled_at: NullableTime
    pull_count: int = Field(description="Requests for its manifest and platform manifests.")
    rule: str


class ImageList(Output):
    images: list[Image]


class Tag(Output):
    name: str
    digest: str
    updated_at: Time = Field(description="When upstream last confirmed the tag's digest.")


class TagList(Output):
    tags: list[Tag]


# -- statistics and upstreams ----------------------------------------------------------------


class Stats(Output):
    hits: int
    misses: int
    bytes_from_cache: int
    bytes_from_upstream: int


class RuleStats(Stats):
    prefix: str


class StatsReport(Output):
    since: NullableTime
    total: Stats
    rules: list[RuleStats]


class RateLimit(Output):
    limit: int | None
    remaining: int | None
    window: int | None = Field(description="Seconds.")
    source: str | None
    seen_at: Time


class Upstream(Output):
    prefix: str
    upstream: str
    reachable: bool | None = Field(description="null until the upstream was asked anything.")
    last_success_at: NullableTime
    last_error: str | None
    last_error_at: NullableTime
    blocked_until: NullableTime = Field(description="Set while a 429 asks to wait.")
    rate_limit: RateLimit | None


class UpstreamList(Output):
    upstreams: list[Upstream]


class Status(Output):
    version: str
    rules: int
    repositories: int
    images: int
    blobs: int
    stored_bytes: int
    upstreams: list[Upstream]
    stats: StatsReport


# -- login tokens ----------------------------------------------------------------------------


class LoginTokenRequest(Input):
    ttl: NullableDurationInput = Field(
        default=None,
        description="The token's lifetime, at least 1 s and at most the server's "
        "auth.login_token_ttl (the default).",
    )


class LoginToken(Output):
    token: str = Field(description="Give it as the password to `docker login --password-stdin`.")
    username: str = Field(description="The username that goes with it: `token` (or `AWS`).")
    principal: str = Field(description="Who the token logs in as: the caller.")
    expires_at: Time = Field(description="Refused from this instant on.")
