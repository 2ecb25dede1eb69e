"""Client configuration that points container runtimes at the cache, generated from its rules.

containerd gets one `hosts.toml` per registry host, Docker a `daemon.json`, CRI-O and podman a
`registries.conf` drop-in. Pure functions: rules and the cache's URL in, file texts out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from pullthrough.config import DOCKER_HUB_HOSTS, RuleConfig, rules_by_host

ContainerdMode = Literal["ns", "override_path"]
CONTAINERD_MODES: tuple[ContainerdMode, ...] = ("ns", "override_path")

CONTAINERD_CERTS_DIR = PurePosixPath("/etc/containerd/certs.d")
DOCKER_DAEMON_JSON = PurePosixPath("/etc/docker/daemon.json")
REGISTRIES_DROP_IN = PurePosixPath("/etc/containers/registries.conf.d/50-pullthrough.conf")

# The name image references use for Docker Hub; containerd looks up `certs.d/docker.io`.
DOCKER_HUB = "docker.io"
# Where clients go when the cache does not answer (containerd's `server`).
_DOCKER_HUB_API = "https://registry-1.docker.io"


class MirrorConfigError(ValueError):
    """Rules or a cache URL that no client configuration can be made from."""


@dataclass(frozen=True)
class ConfigFile:
    """One generated file: where it belongs on the client machine, relative to its directory
    (`docker.io/hosts.toml`), and its text."""

    path: PurePosixPath
    text: str


@dataclass(frozen=True)
class CacheAddress:
    """The cache as clients reach it: `http://127.0.0.1:5000` → scheme and `127.0.0.1:5000`."""

    scheme: str
    host: str

    @classmethod
    def parse(cls, url: str) -> CacheAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MirrorConfigError(
                f"cache URL {url!r} is not an http(s) URL (like http://127.0.0.1:5000)"
            )
        if parts.path not in ("", "/") or parts.query or "@" in parts.netloc:
            raise MirrorConfigError(
                f"cache URL {url!r}: give the cache's base URL, without a path or credentials"
            )
        return cls(parts.scheme, parts.netloc.lower())

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def insecure(self) -> bool:
        return self.scheme == "http"


def registry_host(host: str) -> str:
    """The name image references use for a registry host: Docker Hub's API hosts are
    `docker.io`."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_HOSTS else host


def registry_hosts(rules: Sequence[RuleConfig]) -> dict[str, RuleConfig]:
    """Each registry host some rule answers for, and the rule that answers it on the server."""
    hosts: dict[str, RuleConfig] = {}
    for host, rule in rules_by_host(rules).items():
        hosts.setdefault(registry_host(host), rule)
    return dict(sorted(hosts.items()))


def fallback_server(host: str, rule: RuleConfig) -> str:
    """Where a client goes itself when the cache fails: the registry's own API (the rule's
    upstream URL when it is that host, so a plain-http registry stays http)."""
    if host == DOCKER_HUB:
        return _DOCKER_HUB_API
    if host == rule.upstream_host:
        return rule.upstream
    return f"https://{host}"


def containerd_hosts(
    rules: Sequence[RuleConfig], cache_url: str, mode: ContainerdMode = "ns"
) -> list[ConfigFile]:
    """`<host>/hosts.toml` for every registry host the rules answer for.

    In `ns` mode the mirror is the cache's root: containerd asks `/v2/<name>/…?ns=<host>` and the
    server picks the rule by host. In `override_path` mode the mirror is the rule's prefix
    (`<cache>/v2/<prefix>`), which routes by path alone.
    """
    if mode not in CONTAINERD_MODES:
        raise MirrorConfigError(f"mode {mode!r} is not one of {', '.join(CONTAINERD_MODES)}")
    cache = CacheAddress.parse(cache_url)
    hosts = registry_hosts(rules)
    if not hosts:
        raise MirrorConfigError("the server has no rules: add one with `pullthrough rules`")
    return [
        ConfigFile(PurePosixPath(host) / "hosts.toml", _hosts_toml(host, rule, cache, mode))
        for host, rule in hosts.items()
    ]


def _hosts_toml(host: str, rule: RuleConfig, cache: CacheAddress, mode: ContainerdMode) -> str:
    mirror = cache.url if mode == "ns" else f"{cache.url}/v2/{rule.prefix}"
    lines = [
        f"# {host} through the pullthrough cache (rule {rule.prefix!r}); containerd falls back",
        "# to `server` when the cache cannot answer.",
        f"server = {_toml_string(fallback_server(host, rule))}",
        "",
        f"[host.{_toml_string(mirror)}]",
        '  capabilities = ["pull", "resolve"]',
    ]
    if mode == "override_path":
        lines.append("  override_path = true")
    return "\n".join(lines) + "\n"


def docker_daemon_json(rules: Sequence[RuleConfig], cache_url: str) -> ConfigFile:
    """`daemon.json` keys that make the Docker daemon pull Docker Hub images through the cache.

    Docker mirrors Docker Hub only, and asks the mirror for names without a prefix, which the
    server hands to the default rule: that rule must be the one answering for Docker Hub.
    """
    cache = CacheAddress.parse(cache_url)
    default = next((r for r in rules if r.default), None)
    if default is None:
        raise MirrorConfigError(
            "Docker asks a mirror for unprefixed names, which go to the default rule, and no "
            "rule is the default: mark the Docker Hub rule `default: true`"
        )
    if DOCKER_HUB not in {registry_host(h) for h in default.mirror_hosts}:
        raise MirrorConfigError(
            f"Docker mirrors only Docker Hub, but the default rule {default.prefix!r} answers "
            f"for {', '.join(default.mirror_hosts)}: make the Docker Hub rule the default, or "
            "list docker.io in the default rule's mirror_of"
        )
    document: dict[str, list[str]] = {"registry-mirrors": [cache.url]}
    if cache.insecure:
        document["insecure-registries"] = [cache.host]
    return ConfigFile(PurePosixPath("daemon.json"), json.dumps(document, indent=2) + "\n")


def merged_daemon_json(existing: str, generated: dict[str, list[str]]) -> str:
    """An existing `daemon.json` with the cache's keys set: the mirror list replaced, the
    insecure registries added to; every other setting kept."""
    try:
        document = json.loads(existing) if existing.strip() else {}
    except json.JSONDecodeError as exc:
        raise MirrorConfigError(f"the existing daemon.json is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MirrorConfigError("the existing daemon.json is not a JSON object")
    document["registry-mirrors"] = generated["registry-mirrors"]
    insecure = [str(h) for h in document.get("insecure-registries") or []]
    insecure += [h for h in generated.get("insecure-registries", []) if h not in insecure]
    if insecure:
        document["insecure-registries"] = insecure
    return json.dumps(document, indent=2) + "\n"


def registries_conf(rules: Sequence[RuleConfig], cache_url: str) -> ConfigFile:
    """A containers-registries.conf (v2) drop-in: each registry host the rules answer for gets
    the cache, under the rule's prefix, as its mirror."""
    cache = CacheAddress.parse(cache_url)
    hosts = registry_hosts(rules)
    if not hosts:
        raise MirrorConfigError("the server has no rules: add one with `pullthrough rules`")
    blocks = []
    for host, rule in hosts.items():
        lines = [
            "[[registry]]",
            f"prefix = {_toml_string(host)}",
            f"location = {_toml_string(host)}",
        ]
        if fallback_server(host, rule).startswith("http://"):
            lines.append("insecure = true")
        lines += [
            "",
            "[[registry.mirror]]",
            f"location = {_toml_string(f'{cache.host}/{rule.prefix}')}",
        ]
        if cache.insecure:
            lines.append("insecure = true")
        blocks.append("\n".join(lines) + "\n")
    header = "# Registries pulled through the pullthrough cache; a registry is used directly\n"
    header += "# when the cache cannot answer.\n\n"
    return ConfigFile(PurePosixPath(REGISTRIES_DROP_IN.name), header + "\n".join(blocks))


def printed(files: Sequence[ConfigFile], directory: PurePosixPath) -> str:
    """The files for a terminal: each preceded by a comment naming where it goes; what follows
    the comment is the file's exact content."""
    return "\n".join(f"# {directory / file.path}\n{file.text}" for file in files)


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for the characters URLs and hosts contain.
    return json.dumps(value)
