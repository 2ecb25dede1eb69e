"""The closed set of errors pullthrough answers with, each with its OCI code and HTTP status.

Every failure a client can see is one of these classes; handlers render them as the OCI error
body `{"errors": [{"code", "message", "detail"}]}`. Foreign exceptions (aiohttp, OS, SQL) are
translated into these at the boundary where they happen, once.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """An error a registry client sees: an OCI error code, an HTTP status and a message."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class BlobUnknown(RegistryError):
    code = "BLOB_UNKNOWN"
    status = 404


class DigestInvalid(RegistryError):
    code = "DIGEST_INVALID"
    status = 400


class ManifestUnknown(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404


class ManifestInvalid(RegistryError):
    code = "MANIFEST_INVALID"
    status = 400


class NameInvalid(RegistryError):
    code = "NAME_INVALID"
    status = 400


class NameUnknown(RegistryError):
    code = "NAME_UNKNOWN"
    status = 404


class TagInvalid(RegistryError):
    """A reference that is neither a valid tag nor a valid digest."""

    code = "TAG_INVALID"
    status = 400


class PaginationNumberInvalid(RegistryError):
    code = "PAGINATION_NUMBER_INVALID"
    status = 400


class RangeNotSatisfiable(RegistryError):
    """A `Range` header that is malformed or lies outside the blob; 416 with `bytes */size`."""

    code = "RANGE_INVALID"
    status = 416


class RequestInvalid(RegistryError):
    """A request pullthrough cannot parse: bad query values, unknown endpoints under /v2/."""

    code = "UNSUPPORTED"
    status = 400


class EndpointUnknown(RegistryError):
    code = "UNSUPPORTED"
    status = 404


class HeadersTooLarge(RegistryError):
    code = "UNSUPPORTED"
    status = 431


class Unsupported(RegistryError):
    """Push, delete and every other write: a pull-through cache is read-only to clients."""

    code = "UNSUPPORTED"
    status = 405


class Unauthorized(RegistryError):
    code = "UNAUTHORIZED"
    status = 401


class Denied(RegistryError):
    code = "DENIED"
    status = 403


class TooManyRequests(RegistryError):
    code = "TOOMANYREQUESTS"
    status = 429


class UpstreamUnavailable(RegistryError):
    """The upstream registry could not be reached, or answered with a server error."""

    code = "UNAVAILABLE"
    status = 502


class UpstreamTimeout(RegistryError):
    code = "UNAVAILABLE"
    status = 504


class UpstreamInvalid(RegistryError):
    """The upstream answered with something that is not what it claimed (wrong digest, size)."""

    code = "UNAVAILABLE"
    status = 502


class StorageUnavailable(RegistryError):
    code = "UNAVAILABLE"
    status = 503
