"""Manifests through the cache: by digest immutable, by tag fresh for the rule's `tag_ttl`.

A stale tag is revalidated with a HEAD (Docker Hub does not count HEADs against its rate limit)
and fetched with GET only when its digest changed. When upstream fails, a cached tag is served
stale up to the rule's `max_stale`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from pullthrough.access.import_check import ImportCheck, import_anything
from pullthrough.cache.eager import EagerFill
from pullthrough.cache.memo import ManifestMemo
from pullthrough.cache.negative import NegativeCache
from pullthrough.cache.pulls import PullRecorder
from pullthrough.cache.routing import Route
from pullthrough.cache.singleflight import SingleFlight
from pullthrough.cache.stats import StatsRecorder
from pullthrough.cache.upstreams import Upstreams
from pullthrough.errors import (
    ManifestUnknown,
    NameUnknown,
    TooManyRequests,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.metadata.manifests import StoredManifest, TaggedManifest
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest
from pullthrough.oci.manifest import parse_manifest
from pullthrough.oci.names import TAG_GRAMMAR, is_tag
from pullthrough.scanning.gate import Gate
from pullthrough.scanning.scans.service import ScanService
from pullthrough.storage.locks import Locks, holding
from pullthrough.telemetry.tracing import record_served

log = logging.getLogger(__name__)

# A refusal names this many of an image's uncached blobs, and counts the rest.
_UNCACHED_NAMED = 3

# Upstream trouble that a cached copy may paper over; a 404 is an answer, not trouble.
UPSTREAM_TROUBLE = (UpstreamUnavailable, UpstreamTimeout, TooManyRequests)

CacheStatus = Literal["hit", "miss", "revalidated", "stale"]


@dataclass(frozen=True, slots=True)
class ManifestAnswer:
    manifest: StoredManifest
    cache: CacheStatus
    stale_since: float | None = None


class ManifestCache:
    def __init__(
        self,
        metadata: MetadataStore,
        upstreams: Upstreams,
        locks: Locks,
        pulls: PullRecorder,
        stats: StatsRecorder,
        eager: EagerFill | None = None,
    ) -> None:
        self._metadata = metadata
        # Starts the blobs of an image manifest fetched for a client (cache/eager.py).
        self._eager = eager
        # Worker processes coalesce upstream requests through these locks.
        self._locks = locks
        self._pulls = pulls
        self._stats = stats
        self._upstreams = upstreams
        self._flights: SingleFlight[StoredManifest] = SingleFlight()
        self._answers: SingleFlight[ManifestAnswer] = SingleFlight()
        self._missing = NegativeCache()
        self._memo = ManifestMemo(metadata.revisions)
        # Set by the wiring once scanning is built over this cache (cache/service.py): scans
        # of images cached for the first time, and the gate a pull passes before it is served.
        self.scans: ScanService | None = None
        self.gate: Gate | None = None

    async def pull(
        self,
        route: Route,
        reference: str,
        accepted: frozenset[str] | None,
        may_import: ImportCheck = import_anything,
        *,
        with_body: bool,
    ) -> ManifestAnswer:
        """A client's pull of a manifest: `get` it, refuse an image whose blobs a principal that
        may not import could not fetch, pass the scanning gate (scanning/gate.py), start the
        blobs of an image just fetched from upstream filling (eager fill), and count the pull
        (and, `with_body`, its bytes)."""
        answer = await self.get(route, reference, accepted, may_import)
        await self._check_image(route, answer.manifest, may_import)
        manifest = answer.manifest
        if answer.cache == "miss" and self.scans is not None:
            self.scans.first_cached(route.repository, manifest.media_type, manifest.digest)
        if self.gate is not None:  # in a gated repository, refused or held until scanned
            await self.gate.check(
                route.repository, manifest.digest, manifest.media_type, manifest.content
            )
        if answer.cache == "miss" and self._eager is not None:
            self._eager.start(route, answer.manifest, may_import)
        await self.served(route, answer, with_body=with_body)
        return answer

    async def get(
        self,
        route: Route,
        reference: str,
        accepted: frozenset[str] | None,
        may_import: ImportCheck = import_anything,
    ) -> ManifestAnswer:
        """The manifest for a tag or digest; `may_import` is asked before anything not yet
        cached is fetched (refreshing a cached tag is part of pulling it)."""
        if Digest.is_digest(reference):
            return await self._by_digest(route, str(Digest.parse(reference)), may_import)
        if not is_tag(reference):
            # No registry can hold a manifest by this name, so it is not found (as the OCI
            # conformance suite expects) and upstream is not asked.
            raise ManifestUnknown(
                f"{route.repository} has no manifest {reference[:160]!r}: a reference is a tag "
                f"({TAG_GRAMMAR}) or a digest (sha256:<64 hex digits>)"
            )
        answer = await self._by_tag(route, reference, may_import)
        if mediatypes.accepts(accepted, answer.manifest.media_type):
            return answer
        may_import(f"{route.repository}:{reference} as {', '.join(sorted(accepted or ()))}")
        return await self._for_narrow_accept(route, reference, accepted or frozenset())

    async def served(self, route: Route, answer: ManifestAnswer, *, with_body: bool) -> None:
        """Count a pull of the manifest `get` answered; with its body sent (a GET, not a HEAD),
        count its bytes as a hit or a miss too."""
        manifest = answer.manifest
        repository_id = await self._metadata.repositories.id(route.repository, route.rule.prefix)
        self._pulls.record(repository_id, manifest.digest)
        record_served(
            route.rule.prefix, "manifest", answer.cache, len(manifest.content) if with_body else 0
        )
        if with_body:
            if answer.cache == "miss":
                self._stats.miss(route.rule.prefix, len(manifest.content))
            else:
                self._stats.hit(route.rule.prefix, len(manifest.content))

    async def _check_image(
        self, route: Route, manifest: StoredManifest, may_import: ImportCheck
    ) -> None:
        """Refuse, through `may_import`, an image manifest whose config or layers are not all
        cached for this repository. A principal that may not import could not fetch them, and
        clients print the reason a manifest was refused but only the status of a refused blob."""
        if may_import is import_anything:
            return
        parsed = parse_manifest(manifest.content, manifest.media_type)
        uncached = []
        for blob in parsed.blobs:
            size, linked = await self._metadata.blobs.for_repository(route.repository, blob.digest)
            if size is None or not linked:
                uncached.append(blob.digest)
        if uncached:
            shown = ", ".join(uncached[:_UNCACHED_NAMED])
            if len(uncached) > _UNCACHED_NAMED:
                shown += f" and {len(uncached) - _UNCACHED_NAMED} more"
            may_import(
                f"blobs of {route.repository}@{manifest.digest} ({len(uncached)} of its "
                f"{len(parsed.blobs)} config and layer blobs are not cached: {shown})"
            )

    async def _by_digest(
        self, route: Route, digest: str, may_import: ImportCheck
    ) -> ManifestAnswer:
        stored, revision = await self._memo.manifest(route.repository, digest)
        if stored is None:
            stored = await self._metadata.manifests.in_repository(route.repository, digest)
            if stored is not None:
                self._memo.remember_manifest(route.repository, stored, revision)
        if stored is not None:
            return ManifestAnswer(stored, "hit")
        key = ("digest", route.repository, digest)
        self._missing.check(key)
        may_import(f"{route.repository}@{digest}")
        return await self._answers.run(key, lambda: self._fetch_digest(route, digest))

    async def _fetch_digest(self, route: Route, digest: str) -> ManifestAnswer:
        async with holding(self._locks.named("manifest", route.repository, digest)):
            stored = await self._metadata.manifests.in_repository(route.repository, digest)
            if stored is not None:  # another worker fetched it while we waited
                return ManifestAnswer(stored, "hit")
            manifest = await self._fetch(route, digest, mediatypes.UPSTREAM_ACCEPT, expect=digest)
            return ManifestAnswer(manifest, "miss")

    async def _by_tag(self, route: Route, tag: str, may_import: ImportCheck) -> ManifestAnswer:
        ttl = route.rule.tag_ttl
        remembered, revision = await self._memo.tag(route.repository, tag)
        if remembered is not None:
            return ManifestAnswer(remembered.manifest, "hit")
        tagged = await self._metadata.manifests.tag(route.repository, tag)
        if tagged is not None and time.time() - tagged.checked_at < ttl:
            self._memo.remember_tag(route.repository, tag, tagged, ttl, revision)
            return ManifestAnswer(tagged.manifest, "hit")
        key = ("tag", route.repository, tag)
        if tagged is None:
            self._missing.check(key)
            may_import(f"{route.repository}:{tag}")
        answer = await self._answers.run(key, lambda: self._refresh_tag(route, tag))
        if answer.cache in ("miss", "revalidated"):
            checked = TaggedManifest(answer.manifest, time.time())
            self._memo.remember_tag(route.repository, tag, checked, ttl, revision)
        return answer

    async def _refresh_tag(self, route: Route, tag: str) -> ManifestAnswer:
        async with holding(self._locks.named("tag", route.repository, tag)):
            tagged = await self._metadata.manifests.tag(route.repository, tag)
            if tagged is not None and time.time() - tagged.checked_at < route.rule.tag_ttl:
                return ManifestAnswer(tagged.manifest, "hit")  # another worker refreshed it
            return await self._revalidate(route, tag, tagged)

    async def _revalidate(
        self, route: Route, tag: str, tagged: TaggedManifest | None
    ) -> ManifestAnswer:
        client = self._upstreams.client(route.rule)
        try:
            if tagged is not None:
                head = await client.head_manifest(
                    route.upstream_repository, tag, mediatypes.UPSTREAM_ACCEPT
                )
                if head.digest == tagged.manifest.digest:
                    repo_id = await self._metadata.repositories.id(
                        route.repository, route.rule.prefix
                    )
                    await self._metadata.manifests.set_tag(repo_id, tag, head.digest, time.time())
                    return ManifestAnswer(tagged.manifest, "revalidated")
            manifest = await self._fetch(route, tag, mediatypes.UPSTREAM_ACCEPT)
        except UPSTREAM_TROUBLE as exc:
            if tagged is None:
                raise
            if not self._may_serve_stale(route, tagged.checked_at):
                age = time.time() - tagged.checked_at
                raise type(exc)(
                    f"{exc.message}; the cached copy, last confirmed {age:.0f}s ago, is older "
                    f"than max_stale ({route.rule.max_stale:g}s)",
                    detail=exc.detail,
                    headers=exc.headers,
                ) from exc
            log.warning(
                "serving stale %s:%s: %s",
                route.repository,
                tag,
                exc.message,
                extra={"repository": route.repository, "tag": tag},
            )
            return ManifestAnswer(tagged.manifest, "stale", stale_since=tagged.checked_at)
        # Only now, with the manifest stored, does the repository exist (`_fetch`).
        repo_id = await self._metadata.repositories.id(route.repository, route.rule.prefix)
        await self._metadata.manifests.set_tag(repo_id, tag, manifest.digest, time.time())
        return ManifestAnswer(manifest, "miss")

    @staticmethod
    def _may_serve_stale(route: Route, checked_at: float) -> bool:
        max_stale = route.rule.max_stale
        return max_stale is None or time.time() - checked_at <= max_stale

    async def _for_narrow_accept(
        self, route: Route, tag: str, accepted: frozenset[str]
    ) -> ManifestAnswer:
        """A client that does not accept the tag's manifest type gets what upstream offers it."""
        accept = ", ".join(sorted(accepted))
        manifest = await self._flights.run(
            ("narrow", route.repository, tag, accept), lambda: self._fetch(route, tag, accept)
        )
        return ManifestAnswer(manifest, "miss")

    async def _fetch(
        self, route: Route, reference: str, accept: str, expect: str | None = None
    ) -> StoredManifest:
        """GET a manifest upstream, verify it, store it; remember a 404 briefly."""
        client = self._upstreams.client(route.rule)
        log.debug(
            "fetching %s:%s from %s",
            route.upstream_repository,
            reference,
            client.host,
            extra={"repository": route.repository, "reference": reference},
        )
        try:
            fetched = await client.get_manifest(route.upstream_repository, reference, accept)
        except (ManifestUnknown, NameUnknown) as exc:
            # A 401 means the credential was refused, not that the thing is missing: fixing
            # the secret must take effect on the next pull, so it is not remembered.
            refused = isinstance(exc.detail, dict) and exc.detail.get("status") == 401
            if not refused:
                kind = "digest" if expect else "tag"
                self._missing.remember(
                    (kind, route.repository, reference), exc, route.rule.negative_ttl
                )
            raise
        actual = str(Digest.of(fetched.content))
        if expect is not None and actual != expect:
            raise UpstreamInvalid(
                f"upstream {route.rule.prefix} ({client.host}) answered {route.upstream_repository}"
                f"@{expect} with a manifest whose digest is {actual}; not cached"
            )
        parsed = parse_manifest(fetched.content, fetched.media_type)
        repo_id = await self._metadata.repositories.id(route.repository, route.rule.prefix)
        await self._metadata.manifests.save(repo_id, actual, fetched.content, parsed)
        return StoredManifest(
            digest=actual,
            media_type=parsed.media_type,
            content=fetched.content,
            artifact_type=parsed.artifact_type,
            subject=parsed.subject.digest if parsed.subject else None,
        )
