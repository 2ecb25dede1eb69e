"""The registry client: one upstream registry's Distribution API, as the cache needs it.

Each call is one logical request through transport.py (auth, redirects, retries); this module
says what the answers mean: verified manifests, streamed blobs, tag pages, referrers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import aiohttp
from yarl import URL

from pullthrough.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    UpstreamInvalid,
)
from pullthrough.oci.digest import Digest
from pullthrough.oci.mediatypes import OCI_INDEX
from pullthrough.upstream.auth import ChallengeStore, UpstreamAuth
from pullthrough.upstream.blob import UpstreamBlob
from pullthrough.upstream.credentials import Credential, CredentialProvider, FixedCredential
from pullthrough.upstream.faults import UpstreamName, read_at_most
from pullthrough.upstream.health import HealthSink
from pullthrough.upstream.observer import RequestObserver
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.retries import RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.throttle import Throttle, ThrottleStore
from pullthrough.upstream.tokens import TokenCache
from pullthrough.upstream.transport import UpstreamTransport

# Re-exported so the whole client API is importable from this module.
__all__ = [
    "ManifestHead",
    "RateLimitState",
    "RegistryClient",
    "RetryPolicy",
    "TokenCache",
    "UpstreamBlob",
    "UpstreamManifest",
    "UpstreamTimeouts",
]

try:
    USER_AGENT = f"pullthrough/{version('pullthrough')}"
except PackageNotFoundError:  # running from a source tree that was never installed
    USER_AGENT = "pullthrough/0+unknown"

MANIFEST_LIMIT = 4 * 1024 * 1024  # distribution's own cap on manifest size
TAGS_LIMIT = 16 * 1024 * 1024  # an unpaginated tag list of a busy repository
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class UpstreamManifest:
    """A manifest as the upstream sent it: exact bytes, media type (no parameters), digest.

    `digest` is the upstream's `Docker-Content-Digest` once checked against the bytes, else the
    sha256 of the bytes.
    """

    content: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class ManifestHead:
    """What a HEAD said about a manifest; `media_type` is empty and `digest`/`size` None when the
    upstream left them out."""

    media_type: str
    digest: str | None
    size: int | None


class RegistryClient:
    """A client for one upstream registry, over a shared `aiohttp.ClientSession` it does not own.

    With a `shared_state`, a 429's Retry-After is honoured by every client of that upstream
    sharing it (all worker processes), and rate-limit headers are saved there. With
    `challenges`, how the upstream asked to be authenticated is shared the same way. The
    credential is fixed (`credential`) or asked of `credentials` each time the client
    authenticates, so a rotated secret is used without a restart.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        name: str,
        credential: Credential | None = None,
        credentials: CredentialProvider | None = None,
        timeouts: UpstreamTimeouts = UpstreamTimeouts(),  # noqa: B008 - frozen, safe to share
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, safe to share
        tokens: TokenCache | None = None,
        shared_state: ThrottleStore | None = None,
        health: HealthSink | None = None,
        challenges: ChallengeStore | None = None,
        clock: Callable[[], float] = time.time,
        observer: RequestObserver | None = None,
    ) -> None:
        base = URL(base_url.rstrip("/"))
        if not base.absolute or base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"upstream {name}: {base_url!r} is not an http(s) URL")
        if credential is not None and credentials is not None:
            raise ValueError(f"upstream {name}: give a credential or a provider, not both")
        self.name = name
        self.base_url = str(base)
        self.host = base.host_port_subcomponent or base.host
        self._base = base
        self._origin = base.origin()
        self._upstream = UpstreamName(name, self.host)
        self._timeouts = timeouts
        auth = UpstreamAuth(
            session,
            self._upstream,
            self._origin,
            credentials=credentials if credentials is not None else FixedCredential(credential),
            tokens=tokens if tokens is not None else TokenCache(),
            timeouts=timeouts,
            user_agent=USER_AGENT,
            challenges=challenges,
        )
        self._transport = UpstreamTransport(
            session,
            self._upstream,
            self._origin,
            auth,
            timeouts=timeouts,
            retry=retry,
            throttle=Throttle(self._upstream, shared_state, clock=clock),
            health=health,
            observer=observer,
        )
        self._bounded = aiohttp.ClientTimeout(
            total=timeouts.total_manifest, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        # Blob bodies may take as long as they take while bytes keep arriving.
        self._streaming = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )

    @property
    def rate_limit(self) -> RateLimitState:
        """Docker Hub's quota as last reported by this upstream (all None until it says)."""
        return self._transport.rate_limit

    @property
    def blocked_until(self) -> float | None:
        """Until when (epoch seconds) this upstream asked, with a 429, not to be sent requests."""
        return self._transport.throttle.blocked_until

    async def close(self) -> None:
        """Save what is pending (the last rate-limit state); the session is not ours to close."""
        await self._transport.throttle.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.name!r}, {self.base_url!r})"

    # -- manifests ----------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str, accept: str) -> UpstreamManifest:
        requested = Digest.parse(reference) if Digest.is_digest(reference) else None
        what = f"manifest {_reference(repo, reference)}"
        url = self._url(repo, "manifests", reference)

        async def attempt() -> UpstreamManifest:
            response = await self._transport.open(
                "GET", url, repo, self._headers(accept), self._bounded
            )
            try:
                if response.status != 200:
                    await self._transport.fail(response, what, repo, ManifestUnknown)
                content = await self._read_body(response, MANIFEST_LIMIT, what)
                digest = Digest.of(content)
                header = response.headers.get("Docker-Content-Digest")
                if header:
                    digest = self._check_digest(content, header, what, "Docker-Content-Digest")
                if requested is not None:
                    self._check_digest(content, str(requested), what, "the requested digest")
                media_type = _media_type(response.headers.get("Content-Type"), content)
                if not media_type:
                    raise UpstreamInvalid(f"{self._upstream} sent {what} without a media type")
                return UpstreamManifest(content, media_type, str(digest))
            finally:
                response.release()

        return await self._transport.call(
            f"fetching {what}", attempt, self._timeouts.total_manifest
        )

    async def head_manifest(self, repo: str, reference: str, accept: str) -> ManifestHead:
        what = f"manifest {_reference(repo, reference)}"
        url = self._url(repo, "manifests", reference)

        async def attempt() -> ManifestHead:
            response = await self._transport.open(
                "HEAD", url, repo, self._headers(accept), self._bounded
            )
            try:
                if response.status != 200:
                    await self._transport.fail(response, what, repo, ManifestUnknown)
                header = response.headers.get("Docker-Content-Digest", "").strip()
                try:
                    digest: str | None = str(Digest.parse(header)) if header else None
                except DigestInvalid:
                    digest = None  # unusable for revalidation; the caller will GET instead
                return ManifestHead(
                    _media_type(response.headers.get("Content-Type"), b""),
                    digest,
                    response.content_length,
                )
            finally:
                response.release()

        return await self._transport.call(
            f"checking {what}", attempt, self._timeouts.total_manifest
        )

    # -- blobs --------------------------------------------------------------------------------

    async def open_blob(self, repo: str, digest: str, offset: int = 0) -> UpstreamBlob:
        if offset < 0:
            raise ValueError(f"negative blob offset {offset}")
        what = f"blob {repo}@{digest}"
        url = self._url(repo, "blobs", digest)
        headers = self._headers("*/*")
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"

        async def attempt() -> UpstreamBlob:
            response = await self._transport.open("GET", url, repo, headers, self._streaming)
            try:
                return await self._blob(response, what, repo, offset)
            except BaseException:
                response.close()
                raise

        return await self._transport.call(f"fetching {what}", attempt, None)

    async def head_blob(self, repo: str, digest: str) -> int:
        what = f"blob {repo}@{digest}"
        url = self._url(repo, "blobs", digest)

        async def attempt() -> int:
            response = await self._transport.open(
                "HEAD", url, repo, self._headers("*/*"), self._bounded
            )
            try:
                if response.status == 200 and response.content_length is not None:
                    return response.content_length
                # A CDN URL is often presigned for GET only and refuses HEAD; ask it for one
                # byte instead and read the size from Content-Range.
                offsite = response.url.origin() != self._origin
                if not (offsite and response.status in (400, 403, 405)):
                    if response.status == 200:
                        raise UpstreamInvalid(f"{self._upstream} sent no size for {what}")
                    await self._transport.fail(response, what, repo, BlobUnknown)
            finally:
                response.release()
            return await self._size_from_range(url, repo, what)

        return await self._transport.call(
            f"checking {what}", attempt, self._timeouts.total_manifest
        )

    async def _size_from_range(self, url: URL, repo: str, what: str) -> int:
        headers = self._headers("*/*")
        headers["Range"] = "bytes=0-0"
        response = await self._transport.open("GET", url, repo, headers, self._bounded)
        try:
            if response.status == 206:
                _, total = self._content_range(response, what)
                if total is not None:
                    return total
            elif response.status == 200 and response.content_length is not None:
                return response.content_length
            else:
                await self._transport.fail(response, what, repo, BlobUnknown)
            raise UpstreamInvalid(f"{self._upstream} sent no size for {what}")
        finally:
            response.close()  # the body is not wanted, even when it is the whole blob

    async def _blob(
        self, response: aiohttp.ClientResponse, what: str, repo: str, offset: int
    ) -> UpstreamBlob:
        status = response.status
        if status == 200:
            # Also when a range was asked for: the upstream ignored it and sends from byte 0.
            start, total = 0, response.content_length
        elif status == 206:
            start, total = self._content_range(response, what)
            if start != offset:
                raise UpstreamInvalid(
                    f"{self._upstream} answered a request for {what} from byte {offset} "
                    f"with bytes from {start}"
                )
        else:
            await self._transport.fail(response, what, repo, BlobUnknown)
        return UpstreamBlob(
            response,
            upstream=self._upstream,
            what=what,
            timeouts=self._timeouts,
            status=status,
            offset=start,
            total_size=total,
        )

    def _content_range(self, response: aiohttp.ClientResponse, what: str) -> tuple[int, int | None]:
        header = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header)
        if match is None:
            raise UpstreamInvalid(
                f"{self._upstream} sent {what} as 206 with an unreadable Content-Range {header!r}"
            )
        start, _, total = match.groups()
        return int(start), None if total == "*" else int(total)

    # -- tags and referrers -------------------------------------------------------------------

    async def list_tags(self, repo: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        query: dict[str, str] = {}
        if n is not None:
            query["n"] = str(n)
        if last:
            query["last"] = last
        url = self._url(repo, "tags", "list").with_query(query)
        what = f"repository {repo}"

        async def attempt() -> tuple[list[str], bool]:
            headers = self._headers("application/json")
            response = await self._transport.open("GET", url, repo, headers, self._bounded)
            try:
                if response.status != 200:
                    await self._transport.fail(response, what, repo, NameUnknown)
                body = await self._read_body(response, TAGS_LIMIT, f"the tag list of {what}")
                tags = _tag_list(body)
                if tags is None:
                    raise UpstreamInvalid(
                        f"{self._upstream} sent an unreadable tag list for {what}"
                    )
                return tags, "next" in response.links
            finally:
                response.release()

        return await self._transport.call(
            f"listing tags of {what}", attempt, self._timeouts.total_manifest
        )

    async def get_referrers(
        self, repo: str, digest: str, artifact_type: str | None
    ) -> bytes | None:
        url = self._url(repo, "referrers", digest)
        if artifact_type:
            url = url.with_query({"artifactType": artifact_type})
        what = f"referrers of {repo}@{digest}"

        async def attempt() -> bytes | None:
            response = await self._transport.open(
                "GET", url, repo, self._headers(OCI_INDEX), self._bounded
            )
            try:
                if response.status in (404, 405):
                    return None  # no referrers API: the caller falls back to the tag schema
                if response.status != 200:
                    await self._transport.fail(response, what, repo, ManifestUnknown)
                # The API answers with an image index and nothing else; a 200 of another type
                # is some catch-all page, not referrers.
                if _media_type(response.headers.get("Content-Type"), b"") != OCI_INDEX:
                    return None
                return await self._read_body(response, MANIFEST_LIMIT, what)
            finally:
                response.release()

        return await self._transport.call(
            f"fetching {what}", attempt, self._timeouts.total_manifest
        )

    async def _read_body(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        declared = response.content_length
        body = (
            b""
            if declared is not None and declared > limit
            else await read_at_most(response, limit)
        )
        if (declared is not None and declared > limit) or len(body) > limit:
            raise UpstreamInvalid(f"{self._upstream} sent {what} larger than {limit} bytes")
        return body

    def _check_digest(self, content: bytes, claimed: str, what: str, source: str) -> Digest:
        try:
            expected = Digest.parse(claimed.strip())
        except DigestInvalid as exc:
            raise UpstreamInvalid(
                f"{self._upstream} sent {what} with an unreadable {source} {claimed!r}"
            ) from exc
        actual = Digest.of(content, expected.algorithm)
        if actual != expected:
            raise UpstreamInvalid(
                f"{self._upstream} sent {what} whose content is {actual}, not {expected} "
                f"({source}); refusing it"
            )
        return expected

    def _url(self, repo: str, *parts: str) -> URL:
        return self._base.with_path(f"{self._base.path.rstrip('/')}/v2/{repo}/{'/'.join(parts)}")

    @staticmethod
    def _headers(accept: str) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, "Accept": accept, "Accept-Encoding": "identity"}


def _reference(repo: str, reference: str) -> str:
    return f"{repo}@{reference}" if Digest.is_digest(reference) else f"{repo}:{reference}"


def _media_type(content_type: str | None, content: bytes) -> str:
    """The media type without parameters; from the manifest's own `mediaType` when the header is
    missing. Empty when neither says."""
    if content_type:
        media_type = content_type.split(";", 1)[0].strip()
        if media_type:
            return media_type
    if content:
        try:
            document = json.loads(content)
        except ValueError:
            return ""
        if isinstance(document, dict) and isinstance(document.get("mediaType"), str):
            return str(document["mediaType"])
    return ""


def _tag_list(body: bytes) -> list[str] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    tags = document.get("tags")
    if tags is None:  # distribution answers `"tags": null` for a repository without tags
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        return None
    return list(tags)
