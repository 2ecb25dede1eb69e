"""Image references (`nginx`, `ghcr.io/org/app:1@sha256:…`), parsed and normalised as docker
and containerd do: no registry means docker.io, and Docker Hub short names mean `library/…`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pullthrough.errors import RegistryError
from pullthrough.oci.digest import Digest
from pullthrough.oci.names import MAX_NAME_LENGTH, validate_name, validate_tag

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DOCKER_HUB = "index.docker.io"
_OFFICIAL_NAMESPACE = "library"

# distribution/reference's grammar: `host[:port]`, the host a DNS name or a bracketed IPv6.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
# docker refuses a bare image ID where a name is expected: it is almost always a mistake.
_IMAGE_ID = re.compile(r"^[a-f0-9]{64}$")


class ReferenceInvalid(ValueError):
    """A string that is not an image reference; the message names it and what is wrong."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """An image reference as written, with docker's normalised reading beside it."""

    domain: str | None  # as written; None when the reference names no registry
    path: str  # the repository path as written (no `library/` added)
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        """The registry host docker would contact: docker.io when none is written."""
        if self.domain is None or self.domain == _LEGACY_DOCKER_HUB:
            return DOCKER_HUB
        return self.domain

    @property
    def repository(self) -> str:
        """The repository path on that registry: Docker Hub's short names are `library/…`."""
        if self.registry == DOCKER_HUB and "/" not in self.path:
            return f"{_OFFICIAL_NAMESPACE}/{self.path}"
        return self.path

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def pull_reference(self) -> str:
        """What a pull asks the registry for: the digest when given (it wins over a tag)."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def suffix(self) -> str:
        """`:tag`, `@digest` or `:tag@digest`, as written (empty when neither is)."""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return tag + digest

    def __str__(self) -> str:
        """The normalised form: `nginx` is `docker.io/library/nginx:latest`."""
        tag = self.tag or (None if self.digest else DEFAULT_TAG)
        return self.name + (f":{tag}" if tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> ImageReference:
    """Parse `[host[:port]/]path[:tag][@digest]` or raise ReferenceInvalid."""
    if not text:
        raise ReferenceInvalid("image reference is empty")
    if text != text.strip():
        raise ReferenceInvalid(f"invalid image reference {text[:160]!r}: it has spaces around it")
    if _IMAGE_ID.fullmatch(text):
        raise ReferenceInvalid(
            f"invalid image reference {text[:160]!r}: a 64-hex image ID is not a name; "
            "write the repository, with @sha256:<digest> to pin it"
        )
    rest, at, digest = text.partition("@")
    if at:
        digest = _checked(text, lambda: str(Digest.parse(digest)))
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):  # a `:` before the last `/` is a port, not a tag
        rest, tag = rest[:colon], rest[colon + 1 :]
        _checked(text, lambda: validate_tag(tag or ""))
    domain, path = _split_domain(rest)
    if domain is not None and _DOMAIN.fullmatch(domain) is None:
        raise ReferenceInvalid(
            f"invalid image reference {text[:160]!r}: {domain!r} is not a registry host[:port]"
        )
    if len(rest) > MAX_NAME_LENGTH:
        raise ReferenceInvalid(
            f"invalid image reference {text[:160]!r}: the name is longer than "
            f"{MAX_NAME_LENGTH} characters"
        )
    if path != path.lower():
        raise ReferenceInvalid(
            f"invalid image reference {text[:160]!r}: repository {path!r} must be lowercase"
        )
    _checked(text, lambda: validate_name(path))
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest or None)


def validate_registry_host(host: str) -> str:
    """Return `host` if it is a registry's `host[:port]` (as references start), else raise."""
    if _DOMAIN.fullmatch(host) is None:
        raise ReferenceInvalid(
            f"{host[:160]!r} is not a registry host[:port] (like 127.0.0.1:5000)"
        )
    return host


def _split_domain(name: str) -> tuple[str | None, str]:
    """docker's rule: the first component is a registry when it has `.` or `:`, is
    `localhost`, or has capitals (a repository path never does)."""
    first, slash, remainder = name.partition("/")
    if not slash:
        return None, name
    if "." in first or ":" in first or first == "localhost" or first != first.lower():
        return first, remainder
    return None, name


def _checked(text: str, check: Callable[[], object]) -> str:
    """Run one of the OCI validators, turning its registry error into ours."""
    try:
        return str(check())
    except RegistryError as exc:
        raise ReferenceInvalid(f"invalid image reference {text[:160]!r}: {exc.message}") from None
