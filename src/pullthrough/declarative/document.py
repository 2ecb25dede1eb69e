"""The declarative file (`pullthrough.yaml`): what it may say, and what it asks of the server.

    rules: [...]            # RuleConfig entries, as in the server's own configuration
    secrets: {name: {username: ..., accessToken: ${env:TOKEN}}}
    templates: [...]        # repository creation templates
    registry_policy: {...}  # an IAM-style document (YAML, or JSON text), or `default`
    scanning: {scan_type: BASIC, rules: [...]}

A section the file leaves out is left alone on the server; a section it gives owns that kind of
resource entirely. Every problem is reported as `<file>: <key path>: <what to do>`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError
from pullthrough.access.secret_values import (
    SecretValueInvalid,
    credential_from_json,
    validate_secret_name,
)
from pullthrough.config import RuleConfig
from pullthrough.declarative.fields import (
    Fields,
    lifecycle_fields,
    scanning_fields,
    template_fields,
)
from pullthrough.declarative.references import UnresolvedReference, has_reference, resolve
from pullthrough.declarative.yamlfile import load_yaml
from pullthrough.errors import NameInvalid
from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicyError
from pullthrough.metadata.template_names import ROOT
from pullthrough.oci.names import validate_name

SECTIONS = ("secrets", "rules", "templates", "scanning", "registry_policy")
# `registry_policy: default` removes the stored policy, so the built-in default applies again.
DEFAULT_POLICY = "default"
_CLEAR_TEXT = (
    "clear-text tokens are not accepted in the file: write ${env:NAME} to take it from an "
    "environment variable, or file:/path to read it from a file"
)


class DocumentError(Exception):
    """A declarative file that cannot be used; `problems` are one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SecretValue:
    """A resolved secret. Its repr hides both values: plans and errors may be printed."""

    username: str = field(repr=False)
    access_token: str = field(repr=False)

    def __repr__(self) -> str:
        return "SecretValue(<hidden>)"

    def to_api(self) -> dict[str, str]:
        return {"username": self.username, "accessToken": self.access_token}


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretEntry(_Entry):
    username: str
    accessToken: str  # ECR's name for it

    @field_validator("accessToken")
    @classmethod
    def _referenced(cls, value: str) -> str:
        if not has_reference(value):
            raise ValueError(_CLEAR_TEXT)
        return value


AppliedFor = Literal["PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH"]


class TemplateEntry(_Entry):
    prefix: str
    description: str | None = Field(default=None, max_length=256)
    applied_for: tuple[AppliedFor, ...] = ("PULL_THROUGH_CACHE",)
    lifecycle_policy: Any = None  # an ECR lifecycle policy: a mapping, or its JSON text
    scan_on_pull: bool = False

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value == ROOT:
            return value
        try:
            return validate_name(value)
        except NameInvalid as exc:
            raise ValueError(f"{exc.message} (or ROOT for every repository)") from None

    @field_validator("lifecycle_policy")
    @classmethod
    def _lifecycle_policy(cls, value: Any) -> Any:
        try:
            return lifecycle_fields(value)
        except LifecyclePolicyError as exc:
            raise ValueError(str(exc)) from None


# ECR's filter alphabet, as the server checks it: lower-case names and `*` wildcards.
_FILTER = re.compile(r"[a-z0-9*._/-]{1,256}")


class RepositoryFilter(_Entry):
    filter: str
    filter_type: Literal["WILDCARD"] = "WILDCARD"

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        if not _FILTER.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is not a repository filter: use lower-case letters, digits, "
                "`. _ / -` and `*` wildcards (`*` matches every repository)"
            )
        return value


ScanFrequency = Literal["SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"]
# ECR: "When the BASIC scan type is specified, the SCAN_ON_PUSH scan frequency is supported";
# ENHANCED supports CONTINUOUS_SCAN and SCAN_ON_PUSH. MANUAL is what no rule means.
_FREQUENCIES: dict[str, tuple[str, ...]] = {
    "BASIC": ("SCAN_ON_PUSH", "MANUAL"),
    "ENHANCED": ("SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"),
}


class ScanningRule(_Entry):
    scan_frequency: ScanFrequency
    repository_filters: tuple[RepositoryFilter, ...] = Field(min_length=1, max_length=100)


class GatePolicy(_Entry):
    repository_filters: tuple[RepositoryFilter, ...] = Field(min_length=1, max_length=100)
    block_severity: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] | None = None
    allowed: tuple[str, ...] = ()
    only_fixable: bool = False


class Scanning(_Entry):
    scan_type: Literal["BASIC", "ENHANCED"] = "BASIC"
    rules: tuple[ScanningRule, ...] = ()
    gates: tuple[GatePolicy, ...] = ()
    gate_wait_seconds: float = Field(default=30.0, ge=0, le=300)


class DeclarativeFile(_Entry):
    """The file as written (secret references unresolved); None is a section left out."""

    rules: tuple[RuleConfig, ...] | None = None
    secrets: dict[str, SecretEntry] | None = None
    templates: tuple[TemplateEntry, ...] | None = None
    registry_policy: Any = None
    scanning: Scanning | None = None

    @field_validator("registry_policy")
    @classmethod
    def _registry_policy(cls, value: Any) -> Any:
        if value == DEFAULT_POLICY:
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(
                    f"not a policy: give a mapping, its JSON text, or `{DEFAULT_POLICY}` ({exc})"
                ) from None
        try:
            return PolicyDocument.parse(value).to_json()
        except PolicyError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Declaration:
    """What a file asks of the server: the sections it gives, in normal form, secrets resolved."""

    source: str
    sections: frozenset[str]
    rules: dict[str, RuleConfig] = field(default_factory=dict)
    secrets: dict[str, SecretValue] = field(default_factory=dict)
    templates: dict[str, Fields] = field(default_factory=dict)
    registry_policy: Fields | None = None  # None: no stored policy, the default applies
    scanning: Fields | None = None


def load_declaration(path: Path, environ: Mapping[str, str] | None = None) -> Declaration:
    """Read, validate and resolve the file at `path`; DocumentError lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DocumentError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise DocumentError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    return parse_declaration(text, str(path), path.parent, environ)


def parse_declaration(
    text: str, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Declaration:
    environ = os.environ if environ is None else environ
    try:
        raw = load_yaml(text)
    except ValueError as exc:
        raise DocumentError([f"{source}: {exc}"]) from None
    if not isinstance(raw, dict) or not raw:
        raise DocumentError(
            [f"{source}: the file declares nothing: give one or more of {', '.join(SECTIONS)}"]
        )
    problems = [
        f"{source}: {key}: is empty; write `{key}: []` (or `{{}}`) to remove every one from the "
        f"server, or leave the key out to leave them alone"
        for key in SECTIONS
        if key in raw and raw[key] is None and key != "registry_policy"
    ]
    if "registry_policy" in raw and raw["registry_policy"] is None:
        problems.append(
            f"{source}: registry_policy: is empty; write `registry_policy: {DEFAULT_POLICY}` to "
            "remove the stored policy (the built-in default applies), or leave the key out"
        )
    if problems:
        raise DocumentError(problems)
    try:
        document = DeclarativeFile.model_validate(raw)
    except ValidationError as exc:
        raise DocumentError([f"{source}: {line}" for line in _pydantic_problems(exc)]) from None
    problems = [f"{source}: {line}" for line in _cross_checks(document)]
    secrets: dict[str, SecretValue] = {}
    for name, entry in (document.secrets or {}).items():
        value = _resolve_secret(name, entry, environ, base_dir, problems, source)
        if value is not None:
            secrets[name] = value
    if problems:
        raise DocumentError(problems)
    policy = document.registry_policy
    return Declaration(
        source=source,
        sections=frozenset(key for key in SECTIONS if key in raw),
        rules={rule.prefix: rule for rule in document.rules or ()},
        secrets=secrets,
        templates={
            t.prefix: template_fields(
                t.prefix,
                description=t.description,
                applied_for=t.applied_for,
                lifecycle_policy=t.lifecycle_policy,
                scan_on_pull=t.scan_on_pull,
            )
            for t in document.templates or ()
        },
        registry_policy=None if policy == DEFAULT_POLICY else policy,
        scanning=(
            scanning_fields(document.scanning.model_dump(mode="json"))
            if document.scanning is not None
            else None
        ),
    )


def _cross_checks(document: DeclarativeFile) -> list[str]:
    """What one entry cannot know about another: duplicates, two defaults, dangling names."""
    problems: list[str] = []
    first: dict[str, int] = {}
    default: int | None = None
    for index, rule in enumerate(document.rules or ()):
        if rule.prefix in first:
            problems.append(
                f"rules.{index}.prefix: {rule.prefix!r} is already the prefix of "
                f"rules.{first[rule.prefix]}; each prefix appears once"
            )
        first.setdefault(rule.prefix, index)
        if rule.default and default is not None:
            problems.append(
                f"rules.{index}.default: only one rule may be the default, and rules.{default} "
                "already is"
            )
        if rule.default and default is None:
            default = index
        if (
            document.secrets is not None
            and rule.credential is not None
            and rule.credential not in document.secrets
        ):
            problems.append(
                f"rules.{index}.credential: secret {rule.credential!r} is not under secrets:, "
                "which owns every secret on the server; add it there, or leave secrets: out to "
                "keep the server's secrets as they are"
            )
    templates: dict[str, int] = {}
    for index, template in enumerate(document.templates or ()):
        if template.prefix in templates:
            problems.append(
                f"templates.{index}.prefix: {template.prefix!r} is already the prefix of "
                f"templates.{templates[template.prefix]}; each prefix appears once"
            )
        templates.setdefault(template.prefix, index)
    for name in document.secrets or {}:
        try:
            validate_secret_name(name)
        except SecretValueInvalid as exc:
            problems.append(f"secrets.{name[:80]}: {exc}")
    scanning = document.scanning
    for index, scan in enumerate(scanning.rules if scanning else ()):
        assert scanning is not None
        allowed = _FREQUENCIES[scanning.scan_type]
        if scan.scan_frequency not in allowed:
            problems.append(
                f"scanning.rules.{index}.scan_frequency: {scan.scan_frequency} does not go with "
                f"scan_type {scanning.scan_type}; use {' or '.join(allowed)}"
            )
    return problems


def _resolve_secret(
    name: str,
    entry: SecretEntry,
    environ: Mapping[str, str],
    base_dir: Path,
    problems: list[str],
    source: str,
) -> SecretValue | None:
    values: dict[str, str] = {}
    for key, raw in (("username", entry.username), ("accessToken", entry.accessToken)):
        try:
            values[key] = resolve(raw, environ, base_dir)
        except UnresolvedReference as exc:
            problems.append(f"{source}: secrets.{name}.{key}: {exc}")
    if len(values) < 2:
        return None
    try:
        # The server's own checks (non-empty, no ':' in the username); messages never echo values.
        credential = credential_from_json(json.dumps(values))
    except SecretValueInvalid as exc:
        problems.append(f"{source}: secrets.{name}: {exc} (after resolving its references)")
        return None
    return SecretValue(credential.username, credential.password)


_KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": SECTIONS,
    "rules": tuple(RuleConfig.model_fields),
    "secrets": tuple(SecretEntry.model_fields),
    "templates": tuple(TemplateEntry.model_fields),
    "scanning": tuple(Scanning.model_fields),
    "scanning.rules": tuple(ScanningRule.model_fields),
    "scanning.rules.repository_filters": tuple(RepositoryFilter.model_fields),
    "scanning.gates": tuple(GatePolicy.model_fields),
    "scanning.gates.repository_filters": tuple(RepositoryFilter.model_fields),
}


def _pydantic_problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            known = _KNOWN_KEYS.get(_model_path(loc[:-1]), ())
            message = f"unknown key (known: {', '.join(known)})" if known else "unknown key"
        elif error["type"] == "missing":
            message = "required: add it"
        lines.append(f"{key}: {message}")
    return lines


def _model_path(loc: tuple[int | str, ...]) -> str:
    """Which model a location is inside: `rules.3` -> `rules`, `secrets.<name>` -> `secrets`."""
    if loc and loc[0] == "secrets":
        return "secrets"
    return ".".join(str(part) for part in loc if not isinstance(part, int))
