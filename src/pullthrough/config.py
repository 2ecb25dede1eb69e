"""Typed settings, parsed once and frozen: embedded defaults, then a YAML file, then PULLTHROUGH_*.

A bad value fails at start with the key and the place it came from named.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pullthrough.errors import NameInvalid
from pullthrough.oci.names import validate_name

ENV_PREFIX = "PULLTHROUGH_"
# The beginnings of a database_url this release opens.
DATABASE_SCHEMES = ("postgresql://", "sqlite:///")
# PULLTHROUGH_CONFIG names the file; PULLTHROUGH_SECRET_* are credentials; the CLI's own
# variables (client/admin.py) say which server to talk to. None of them are settings.
_ENV_NOT_SETTINGS = (
    "PULLTHROUGH_CONFIG",
    "PULLTHROUGH_SECRET_",
    "PULLTHROUGH_SERVER",
    "PULLTHROUGH_TOKEN",
    "PULLTHROUGH_CLIENT_CONFIG",
)
DOCKER_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "docker.io")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


class ConfigError(Exception):
    """A configuration problem, with the key and its source named in the message."""


def parse_duration(value: Any) -> float:
    """Seconds from `30`, `30s`, `5m`, `7d`, `1.5h`; bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 5m, 2h, 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration (like 30s, 5m, 2h, 7d)")
    number, unit = match.groups()
    return float(number) * _UNITS[unit]


Duration = Annotated[float, BeforeValidator(parse_duration)]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "p": 1000**5,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "pi": 1024**5,
}


def parse_size(value: Any) -> int:
    """Bytes from `1073741824`, `500MB`, `50GiB`, `2T`."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like 50GiB")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    match = _SIZE.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a size (like 500MB, 50GiB)")
    number, unit = match.groups()
    unit = (unit or "").lower().removesuffix("b")
    return int(float(number) * _SIZE_UNITS[unit])


Size = Annotated[int, BeforeValidator(parse_size)]


def _valid_name(value: str) -> str:
    try:
        return validate_name(value)
    except NameInvalid as exc:
        raise ValueError(exc.message) from None


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1].lower()


class RuleConfig(BaseModel):
    """One upstream rule: requests under `prefix` are fetched from `upstream`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str
    upstream: str
    default: bool = False
    credential: str | None = None
    mirror_of: tuple[str, ...] | None = None
    tag_ttl: Duration = 300.0
    max_stale: Duration | None = None
    negative_ttl: Duration = 30.0
    upstream_namespace: str | None = None
    # Docker Hub keeps official images under library/: `nginx` there means `library/nginx`.
    implicit_namespace: str | None = None
    # Start fetching an image's config and layers as soon as its manifest is fetched upstream.
    eager_fill: bool = True

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _valid_name(value)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{value!r}: give the registry's base URL, without a path")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("upstream_namespace", "implicit_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else _valid_name(value)

    @property
    def upstream_host(self) -> str:
        return _host_of(self.upstream)

    @property
    def is_docker_hub(self) -> bool:
        return self.upstream_host in DOCKER_HUB_HOSTS

    @property
    def listed_hosts(self) -> tuple[str, ...]:
        """The hosts `mirror_of` names, lower-cased."""
        return tuple(dict.fromkeys(h.lower() for h in self.mirror_of or ()))

    @property
    def mirror_hosts(self) -> tuple[str, ...]:
        """Hosts this rule answers for in containerd's `?ns=` mirror mode: what `mirror_of`
        lists, and always the upstream's own host (Docker Hub's under each of its names), so
        that an image referenced by the upstream's own name is served too."""
        own = DOCKER_HUB_HOSTS if self.is_docker_hub else (self.upstream_host,)
        return tuple(dict.fromkeys((*self.listed_hosts, *own)))

    @property
    def library_namespace(self) -> str | None:
        if self.implicit_namespace is not None:
            return self.implicit_namespace
        return "library" if self.is_docker_hub else None


def rules_by_host(rules: Sequence[RuleConfig]) -> dict[str, RuleConfig]:
    """Each host some rule answers for in `?ns=` mode, and the rule that answers: the first
    rule whose `mirror_of` lists the host, else the first rule whose upstream it is. Listing a
    host is the more deliberate choice, so it wins over another rule's upstream being there."""
    by_host: dict[str, RuleConfig] = {}
    for rule in rules:
        for host in rule.listed_hosts:
            by_host.setdefault(host, rule)
    for rule in rules:
        for host in rule.mirror_hosts:
            by_host.setdefault(host, rule)
    return by_host


def _default_rules() -> tuple[RuleConfig, ...]:
    return (
        RuleConfig(prefix="docker-hub", upstream="https://registry-1.docker.io", default=True),
        RuleConfig(prefix="ghcr", upstream="https://ghcr.io"),
        RuleConfig(prefix="quay", upstream="https://quay.io"),
        RuleConfig(prefix="ecr-public", upstream="https://public.ecr.aws"),
        RuleConfig(prefix="k8s", upstream="https://registry.k8s.io"),
        RuleConfig(prefix="gitlab", upstream="https://registry.gitlab.com"),
    )


class AuthConfig(BaseModel):
    """Client authentication: who may talk to this server at all (policy decides the rest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    # With auth on: anonymous clients are let in and judged by the policy as "anonymous".
    # With auth off: required to listen on anything but loopback.
    allow_anonymous: bool = False
    service: str = "pullthrough"
    token_ttl: Duration = 300.0
    login_token_ttl: Duration = 43200.0
    # The URL clients fetch tokens from, when this server sits behind a proxy; by default it
    # is built from the request's Host.
    realm: str | None = None


class LifecycleConfig(BaseModel):
    """The background job that expires images, enforces the size cap and collects garbage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval: Duration = 3600.0  # 0 turns the periodic job off (`pullthrough lifecycle run`)
    # A blob younger than this is never collected: it may be a fill that just committed, or
    # belong to a manifest being cached right now.
    gc_grace: Duration = 600.0
    max_size: Size | None = None
    low_water: float = Field(default=0.8, gt=0, le=1)


class VulnDbConfig(BaseModel):
    """Where `pullthrough vulndb sync` downloads OSV's archives from, and which ecosystems."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # `<url>/<ecosystem>/all.zip`; a mirror of OSV's bucket for machines that cannot reach it.
    url: str = "https://osv-vulnerabilities.storage.googleapis.com"
    ecosystems: tuple[str, ...] = (
        "Debian",
        "Ubuntu",
        "Alpine",
        "Red Hat",
        "Rocky Linux",
        "AlmaLinux",
        "PyPI",
        "npm",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url {value!r} is not an http:// or https:// URL")
        return value.rstrip("/")


class AwsApiConfig(BaseModel):
    """What the ECR-compatible API (api/ecr) puts in ARNs and answers for `registryId`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str = Field(default="000000000000", pattern=r"^[0-9]{12}$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,32}$")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# SigV4 presigned URLs live at most a week.
_MAX_PRESIGN_SECONDS = 7 * 86400


class StorageConfig(BaseModel):
    """Where blobs live: the filesystem under data_dir, or an S3-compatible bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: files under data_dir/blobs; else `s3://bucket` or `s3://bucket/prefix`.
    url: str | None = None
    # The S3 API's base URL (MinIO, Ceph, Swift, ...); None is AWS for `region`.
    endpoint: str | None = None
    region: str = "us-east-1"
    # `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    path_style: bool = False
    # Filled from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when not given; none at all leaves
    # the choice to the AWS default chain (shared config file, instance or pod role).
    access_key_id: str | None = Field(default=None, repr=False)
    secret_access_key: str | None = Field(default=None, repr=False)
    # Or: the name of a secret in the secret store, username = access key id, password = secret.
    credentials_secret: str | None = None
    # Answer blob GETs with a redirect to a presigned URL of the object (S3 only).
    redirect_blobs: bool = False
    redirect_ttl: Duration = 300.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_storage_url(value)
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint {value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("redirect_ttl")
    @classmethod
    def _redirect_ttl(cls, value: float) -> float:
        if not 1 <= value <= _MAX_PRESIGN_SECONDS:
            raise ValueError("redirect_ttl is between 1s and 7d (what a presigned URL allows)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StorageConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        if self.url is None:
            if self.redirect_blobs:
                raise ValueError("redirect_blobs needs blobs on S3 (storage.url: s3://…)")
            if self.endpoint is not None or self.credentials_secret is not None:
                raise ValueError("endpoint and credentials_secret need storage.url: s3://…")
        return self

    @property
    def bucket(self) -> str | None:
        return None if self.url is None else parse_storage_url(self.url)[0]

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, without slashes at either end ("" for none)."""
        return "" if self.url is None else parse_storage_url(self.url)[1]


def parse_storage_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"storage url {url!r} is not s3://bucket or s3://bucket/prefix")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"storage url {url!r} has more than s3://bucket/prefix")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"storage url {url!r}: {bucket!r} is not a bucket name (3 to 63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    prefix = parts.path.strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"storage url {url!r}: the prefix has an empty, . or .. segment")
    return bucket, prefix


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class Settings(BaseModel):
    """Everything `pullthrough serve` is configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str = "127.0.0.1:5000"
    data_dir: Path = Path("./data")
    # The metadata database: None is the SQLite file in data_dir; else `postgresql://…` (shared
    # by replicas, migrated with `pullthrough migrate`) or `sqlite:///path`.
    database_url: str | None = None
    # The URL other replicas reach this one at (they stream a blob this one is fetching from
    # it); None is http://<listen>, with this host's name when listening on every address.
    advertise_url: str | None = None
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    rules: tuple[RuleConfig, ...] = Field(default_factory=_default_rules)
    log_level: str = "info"
    upstream_connect_timeout: Duration = 10.0
    upstream_read_timeout: Duration = 60.0
    upstream_retries: int = Field(default=3, ge=1, le=10)
    # A fill carries on after its client leaves, but not forever.
    fill_deadline: Duration = 3600.0
    max_header_bytes: int = Field(default=8192, ge=1024, le=65536)
    # Prometheus metrics at /metrics; false: nothing is counted and there is no /metrics.
    metrics: bool = True
    # host:port of a listener of each worker serving only /metrics, without authentication
    # (for a scraper that holds no credential); None: /metrics only on `listen`.
    metrics_listen: str | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    vulndb: VulnDbConfig = Field(default_factory=VulnDbConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    aws: AwsApiConfig = Field(default_factory=AwsApiConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(DATABASE_SCHEMES):
            raise ValueError("database_url starts with postgresql:// or sqlite:///")
        return value

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"advertise_url {value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level is one of debug, info, warning, error")
        return value.lower()

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: tuple[RuleConfig, ...]) -> tuple[RuleConfig, ...]:
        prefixes = [r.prefix for r in rules]
        duplicates = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if duplicates:
            raise ValueError(f"prefix {duplicates[0]!r} is used by more than one rule")
        defaults = [r.prefix for r in rules if r.default]
        if len(defaults) > 1:
            raise ValueError(f"only one rule may be the default; {defaults} all say default: true")
        return rules

    def open_listener_problem(self) -> str | None:
        """Why `serve` must not listen as configured: on an address other machines reach with
        auth off, unless anonymous pulls were chosen. None when it may. Only serving asks this:
        the offline commands (`migrate`, `users`, …) run with the same settings anywhere."""
        host = self.listen_host
        loopback = host in _LOOPBACK_HOSTS or host.startswith("127.")
        if not loopback and not self.auth.enabled and not self.auth.allow_anonymous:
            return (
                f"listen: {self.listen} is reachable from other machines and auth is off: set "
                "auth.enabled: true, or auth.allow_anonymous: true to let anyone pull"
            )
        return None

    @property
    def listen_host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def advertised_url(self) -> str:
        """`advertise_url`, or the URL `listen` makes of this host."""
        if self.advertise_url is not None:
            return self.advertise_url
        host = self.listen_host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen {value!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    known = set(Settings.model_fields)
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(_ENV_NOT_SETTINGS):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise ConfigError(f"environment variable {name}: unknown setting {key!r}")
        try:
            overrides[key] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: not valid YAML: {exc}") from None
    return overrides


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def _storage_keys_from_environment(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """S3 keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, unless the configuration names
    keys or a secret of its own."""
    storage = values.get("storage")
    if not isinstance(storage, dict) or storage.get("url") is None:
        return
    if any(storage.get(k) is not None for k in _STORAGE_KEY_FIELDS):
        return
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        values["storage"] = {
            **storage,
            "access_key_id": environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": environ["AWS_SECRET_ACCESS_KEY"],
        }


_STORAGE_KEY_FIELDS = ("access_key_id", "secret_access_key", "credentials_secret")


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Embedded defaults, overridden by the YAML file, overridden by PULLTHROUGH_* variables."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get("PULLTHROUGH_CONFIG"):
        config_file = environ["PULLTHROUGH_CONFIG"]
    values: dict[str, Any] = {}
    source = "embedded defaults"
    if config_file is not None:
        path = Path(config_file)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the configuration file: {exc.strerror}"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the configuration must be a mapping of keys to values")
        values.update(loaded)
    env_values = _env_overrides(environ)
    if env_values:
        source = f"{source} + PULLTHROUGH_* environment"
    values.update(env_values)
    _storage_keys_from_environment(values, environ)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
