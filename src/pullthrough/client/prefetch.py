"""Warming the cache through its own registry API: for each image, GET the manifest (and, for an
index, the children for the chosen platforms), then every blob, verifying each digest and
discarding the bytes. The server's `X-Pullthrough-Cache` header says where each came from.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from pullthrough.client.naming import CachedName, NoRule
from pullthrough.errors import DigestInvalid, ManifestInvalid
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest
from pullthrough.oci.manifest import Descriptor, ParsedManifest, parse_manifest
from pullthrough.oci.reference import DEFAULT_TAG, ReferenceInvalid, parse_reference

CACHE_HEADER = "X-Pullthrough-Cache"
MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_INDEX,
        mediatypes.DOCKER_MANIFEST_LIST,
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST_V2,
    ]
)
CHUNK = 1 << 20
# Layers that registries do not hold: clients fetch them from the URLs the manifest lists.
_FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.",
)

Source = Literal["cache", "upstream", "unknown"]


def source_of(header: str | None) -> Source:
    """`miss` came from upstream; `hit`, `stale` and `revalidated` were served from the cache."""
    if header is None:
        return "unknown"
    return "upstream" if header.strip().lower() == "miss" else "cache"


class PrefetchFailed(Exception):
    """One image could not be warmed; the message says why in one line."""


class Naming(Protocol):
    """Image reference → name in the cache (`CacheNaming` from the server's rules); raises
    NoRule or ReferenceInvalid with the reason."""

    def resolve(self, reference: str) -> CachedName: ...


class DirectNaming:
    """Naming without the rules (a caller the admin API refuses): only references written
    through the cache (`<cache host>/docker-hub/library/nginx:1.27`) name a repository."""

    def __init__(self, cache_host: str, why: str) -> None:
        self.cache_host = cache_host
        self.why = why

    def resolve(self, reference: str) -> CachedName:
        ref = parse_reference(reference)
        if ref.domain is None or ref.domain.lower() != self.cache_host.lower():
            raise NoRule(
                f"without the server's rules ({self.why}) write the image through the cache, "
                f"e.g. {self.cache_host}/<rule prefix>/{ref.path}"
            )
        return CachedName(
            repository=ref.path,
            reference=ref.tag or ref.digest or DEFAULT_TAG,
            rule_prefix="",
            full=f"{self.cache_host}/{ref.path}{ref.suffix}",
            digest=ref.digest,
        )


@dataclass(frozen=True)
class Platform:
    """`os/architecture[/variant]`, as `--platform` and docker write it."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(
                f"{text!r} is not a platform: write os/arch[/variant], e.g. linux/amd64"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, platform: dict[str, Any] | None) -> bool:
        if not platform:
            return False
        if platform.get("os") != self.os or platform.get("architecture") != self.architecture:
            return False
        return self.variant is None or platform.get("variant") == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def platform_text(platform: dict[str, Any] | None) -> str:
    if not platform:
        return "unknown"
    parts = (platform.get("os"), platform.get("architecture"), platform.get("variant"))
    return "/".join(str(p) for p in parts if p)


@dataclass
class Tally:
    """How many manifests or blobs came from the cache, from upstream, or would not say."""

    cache: int = 0
    upstream: int = 0
    unknown: int = 0

    def add(self, source: Source) -> None:
        setattr(self, source, getattr(self, source) + 1)

    def merge(self, other: Tally) -> None:
        self.cache += other.cache
        self.upstream += other.upstream
        self.unknown += other.unknown

    @property
    def total(self) -> int:
        return self.cache + self.upstream + self.unknown

    def as_json(self) -> dict[str, int]:
        return {"cache": self.cache, "upstream": self.upstream, "unknown": self.unknown}


@dataclass
class ImageResult:
    """What warming one image did; `error` is None when every part of it is cached now."""

    reference: str  # as given
    name: str | None = None  # through the cache: `host:port/docker-hub/library/nginx:1.27`
    digest: str | None = None
    platforms: list[str] = field(default_factory=list)
    manifests: Tally = field(default_factory=Tally)
    blobs: Tally = field(default_factory=Tally)
    bytes_from_cache: int = 0
    bytes_from_upstream: int = 0
    bytes_unknown: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def bytes(self) -> int:
        return self.bytes_from_cache + self.bytes_from_upstream + self.bytes_unknown

    def count_bytes(self, source: Source, size: int) -> None:
        if source == "cache":
            self.bytes_from_cache += size
        elif source == "upstream":
            self.bytes_from_upstream += size
        else:
            self.bytes_unknown += size

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "name": self.name,
            "digest": self.digest,
            "ok": self.ok,
            "error": self.error,
            "platforms": self.platforms,
            "manifests": self.manifests.as_json(),
            "blobs": self.blobs.as_json(),
            "bytes": self.bytes,
            "bytes_from_cache": self.bytes_from_cache,
            "bytes_from_upstream": self.bytes_from_upstream,
            "seconds": round(self.seconds, 3),
        }


class Progress(Protocol):
    """Where the prefetcher reports progress (a rich progress bar per image in the CLI)."""

    def started(self, reference: str) -> None: ...

    def planned(self, reference: str, total_bytes: int | None, blobs: int) -> None: ...

    def advanced(self, reference: str, nbytes: int) -> None: ...

    def blob_done(self, reference: str) -> None: ...

    def finished(self, result: ImageResult) -> None: ...


class NoProgress:
    def started(self, reference: str) -> None:
        pass

    def planned(self, reference: str, total_bytes: int | None, blobs: int) -> None:
        pass

    def advanced(self, reference: str, nbytes: int) -> None:
        pass

    def blob_done(self, reference: str) -> None:
        pass

    def finished(self, result: ImageResult) -> None:
        pass


class Prefetcher:
    """Warms images through the cache at `http`'s base URL, `concurrency` downloads at once.

    `platforms` chooses an index's children; empty means every one the index lists.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        naming: Naming,
        *,
        platforms: Sequence[Platform] = (),
        concurrency: int = 4,
        progress: Progress | None = None,
    ) -> None:
        self._http = http
        self._naming = naming
        self._platforms = tuple(platforms)
        self._downloads = asyncio.Semaphore(concurrency)
        self._images = asyncio.Semaphore(concurrency)
        self._progress = progress or NoProgress()

    async def warm_all(self, references: Sequence[str]) -> list[ImageResult]:
        """Every image, concurrently; one failing does not stop the others."""
        return list(await asyncio.gather(*(self.warm(ref) for ref in references)))

    async def warm(self, reference: str) -> ImageResult:
        result = ImageResult(reference)
        async with self._images:
            self._progress.started(reference)
            started = time.monotonic()
            try:
                await self._warm(reference, result)
            except PrefetchFailed as exc:
                result.error = str(exc)
            result.seconds = time.monotonic() - started
            self._progress.finished(result)
        return result

    async def _warm(self, reference: str, result: ImageResult) -> None:
        try:
            name = self._naming.resolve(reference)
        except (NoRule, ReferenceInvalid) as exc:
            raise PrefetchFailed(str(exc)) from None
        # As written, plus the tag docker would add (`nginx` pulls `nginx:latest`).
        last = name.full.rsplit("/", 1)[-1]
        result.name = name.full if ":" in last or "@" in last else f"{name.full}:{name.reference}"
        repository = name.repository
        top, top_digest = await self._manifest(repository, name.pull_reference, result)
        result.digest = top_digest
        images: list[ParsedManifest] = []
        if top.is_index:
            for child in self._children(top, reference):
                manifest, _ = await self._manifest(repository, child.digest, result)
                if manifest.is_index:  # nested indexes are rare; take their children whole
                    for grandchild in manifest.children:
                        nested, _ = await self._manifest(repository, grandchild.digest, result)
                        images.append(nested)
                else:
                    images.append(manifest)
                result.platforms.append(platform_text(child.platform))
        else:
            images.append(top)
        blobs = _unique_blobs(images)
        sizes = [blob.size for blob in blobs]
        total = sum(sizes) if all(size >= 0 for size in sizes) else None
        self._progress.planned(reference, total, len(blobs))
        downloads = [
            asyncio.create_task(self._blob(repository, blob, reference, result)) for blob in blobs
        ]
        try:
            await asyncio.gather(*downloads)
        except BaseException:
            # The first failure fails the image: stop its other downloads.
            for download in downloads:
                download.cancel()
            await asyncio.gather(*downloads, return_exceptions=True)
            raise

    def _children(self, index: ParsedManifest, reference: str) -> list[Descriptor]:
        if not self._platforms:
            return list(index.children)
        chosen = [
            child
            for child in index.children
            if any(wanted.matches(child.platform) for wanted in self._platforms)
        ]
        if not chosen:
            offered = sorted({platform_text(c.platform) for c in index.children})
            wanted = ", ".join(str(p) for p in self._platforms)
            raise PrefetchFailed(
                f"{reference} has no {wanted} image; it offers {', '.join(offered) or 'none'}"
            )
        return chosen

    async def _manifest(
        self, repository: str, reference: str, result: ImageResult
    ) -> tuple[ParsedManifest, str]:
        path = f"/v2/{repository}/manifests/{reference}"
        async with self._downloads:
            try:
                response = await self._http.get(path, headers={"Accept": MANIFEST_ACCEPT})
            except httpx.TransportError as exc:
                raise PrefetchFailed(self._unreachable(exc)) from None
        if response.status_code != 200:
            raise PrefetchFailed(_refusal(response, f"{repository}:{reference}"))
        content = response.content
        computed = Digest.of(content)
        expected = _expected_digest(reference, response.headers.get("Docker-Content-Digest"))
        if expected is not None and expected.algorithm != computed.algorithm:
            computed = Digest.of(content, expected.algorithm)
        if expected is not None and computed != expected:
            raise PrefetchFailed(
                f"manifest {repository}@{expected} came back as {computed}: the server sent "
                "wrong bytes; try again, and check the server's log if it persists"
            )
        try:
            manifest = parse_manifest(content, response.headers.get("Content-Type"))
        except ManifestInvalid as exc:
            raise PrefetchFailed(f"{repository}:{reference}: {exc.message}") from None
        result.manifests.add(source_of(response.headers.get(CACHE_HEADER)))
        return manifest, str(computed)

    async def _blob(
        self, repository: str, blob: Descriptor, reference: str, result: ImageResult
    ) -> None:
        digest = Digest.parse(blob.digest)
        hasher = hashlib.new(digest.algorithm)
        received = 0
        path = f"/v2/{repository}/blobs/{digest}"
        async with self._downloads:
            try:
                async with self._http.stream("GET", path) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise PrefetchFailed(_refusal(response, f"blob {digest} of {repository}"))
                    source = source_of(response.headers.get(CACHE_HEADER))
                    async for chunk in response.aiter_bytes(CHUNK):
                        # hashlib releases the GIL on big buffers: hash off the event loop.
                        if len(chunk) >= CHUNK // 4:
                            await asyncio.to_thread(hasher.update, chunk)
                        else:
                            hasher.update(chunk)
                        received += len(chunk)
                        self._progress.advanced(reference, len(chunk))
            except httpx.TransportError as exc:
                raise PrefetchFailed(
                    f"blob {digest} of {repository} broke off after {received} bytes: {exc}"
                ) from None
        got = f"{digest.algorithm}:{hasher.hexdigest()}"
        if got != str(digest) or (blob.size >= 0 and received != blob.size):
            raise PrefetchFailed(
                f"blob {digest} of {repository} failed verification ({received} bytes hashing "
                f"to {got}): the image was not warmed; try again, and check the server's log "
                "if it persists"
            )
        result.blobs.add(source)
        result.count_bytes(source, received)
        self._progress.blob_done(reference)

    def _unreachable(self, exc: httpx.TransportError) -> str:
        return (
            f"cannot reach {self._http.base_url}: {exc or type(exc).__name__} "
            "(is `pullthrough serve` running? set --server or PULLTHROUGH_SERVER)"
        )


def _unique_blobs(images: Sequence[ParsedManifest]) -> list[Descriptor]:
    """Configs and layers of `images`, each digest once, without layers registries don't hold."""
    seen: dict[str, Descriptor] = {}
    for image in images:
        for blob in image.blobs:
            if blob.media_type.startswith(_FOREIGN_LAYER_TYPES):
                continue
            seen.setdefault(blob.digest, blob)
    return list(seen.values())


def _expected_digest(reference: str, header: str | None) -> Digest | None:
    """The digest the manifest must have: the one asked for, else the one the server names."""
    for text in (reference, header):
        if text and ":" in text:
            try:
                return Digest.parse(text)
            except DigestInvalid:
                continue
    return None


def _refusal(response: httpx.Response, what: str) -> str:
    """An error response as one line, with what to do about it."""
    message = ""
    try:
        errors = response.json().get("errors") or []
        if errors and isinstance(errors[0], dict):
            message = str(errors[0].get("message") or errors[0].get("code") or "")
    except (ValueError, AttributeError):
        pass
    status = response.status_code
    if status == 401:
        has_credentials = "Authorization" in response.request.headers
        hint = (
            "the server refused the credentials in --token"
            if has_credentials
            else "the server wants credentials: pass --token NAME:API_KEY (or PULLTHROUGH_TOKEN)"
        )
        return f"{what}: {hint}"
    detail = message or f"HTTP {status}"
    return f"{what}: {detail} (HTTP {status})"


def merged(results: Sequence[ImageResult], seconds: float | None = None) -> ImageResult:
    """The total over `results`, as one result named `total`; `seconds` is the whole run's
    time (the images overlap), else the longest image's."""
    total = ImageResult("total")
    for result in results:
        total.manifests.merge(result.manifests)
        total.blobs.merge(result.blobs)
        total.bytes_from_cache += result.bytes_from_cache
        total.bytes_from_upstream += result.bytes_from_upstream
        total.bytes_unknown += result.bytes_unknown
        total.seconds = max(total.seconds, result.seconds)
    if seconds is not None:
        total.seconds = seconds
    failed = sum(1 for r in results if not r.ok)
    total.error = f"{failed} of {len(results)} failed" if failed else None
    return total
