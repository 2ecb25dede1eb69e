"""Listings: the catalog of cached repositories; tag lists and referrers from upstream while it
answers, from the cache when it does not."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pullthrough.cache.manifests import UPSTREAM_TROUBLE, ManifestCache
from pullthrough.cache.routing import Route
from pullthrough.cache.upstreams import Upstreams
from pullthrough.errors import ManifestUnknown, NameUnknown, RegistryError
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CatalogPage:
    names: list[str]
    more: bool


@dataclass(frozen=True, slots=True)
class TagPage:
    tags: list[str]
    more: bool
    from_cache: bool


@dataclass(frozen=True, slots=True)
class ReferrersIndex:
    content: bytes
    filtered: bool


class Listings:
    def __init__(
        self, metadata: MetadataStore, upstreams: Upstreams, manifests: ManifestCache
    ) -> None:
        self._metadata = metadata
        self._upstreams = upstreams
        self._manifests = manifests

    async def catalog(
        self,
        n: int | None,
        last: str | None,
        may_list: Callable[[str], Awaitable[bool]] | None = None,
    ) -> CatalogPage:
        """Up to `n` cached repository names after `last`; with `may_list`, only the names it
        allows (so the page is cut after filtering)."""
        if may_list is None:
            names = await self._metadata.repositories.catalog(None if n is None else n + 1, last)
        else:
            names = [
                name
                for name in await self._metadata.repositories.catalog(None, last)
                if await may_list(name)
            ]
        if n is not None and len(names) > n:
            return CatalogPage(names[:n], more=True)
        return CatalogPage(names, more=False)

    async def tags(self, route: Route, n: int | None, last: str | None) -> TagPage:
        client = self._upstreams.client(route.rule)
        try:
            tags, more = await client.list_tags(route.upstream_repository, n, last)
            return _paginate(tags, more, n, last)
        except UPSTREAM_TROUBLE as exc:
            log.warning("tags of %s from cache: %s", route.repository, exc.message)
        cached = await self._metadata.manifests.tags(
            route.repository, None if n is None else n + 1, last
        )
        more = n is not None and len(cached) > n
        return TagPage(cached[:n] if n is not None else cached, more, from_cache=True)

    async def referrers(
        self, route: Route, subject: Digest, artifact_type: str | None
    ) -> ReferrersIndex:
        descriptors: dict[str, dict[str, Any]] = {}
        for item in await self._upstream_referrers(route, subject):
            if isinstance(item, dict) and isinstance(item.get("digest"), str):
                descriptors.setdefault(item["digest"], item)
        for stored in await self._metadata.manifests.referrers(route.repository, str(subject)):
            descriptors.setdefault(
                stored.digest,
                {
                    "mediaType": stored.media_type,
                    "digest": stored.digest,
                    "size": len(stored.content),
                    **({"artifactType": stored.artifact_type} if stored.artifact_type else {}),
                },
            )
        manifests = list(descriptors.values())
        if artifact_type is not None:
            manifests = [m for m in manifests if m.get("artifactType") == artifact_type]
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
        return ReferrersIndex(json.dumps(index).encode(), filtered=artifact_type is not None)

    async def _upstream_referrers(self, route: Route, subject: Digest) -> list[Any]:
        """Upstream's referrers API, else the `sha256-<hex>` tag schema (through the cache)."""
        client = self._upstreams.client(route.rule)
        try:
            native = await client.get_referrers(route.upstream_repository, str(subject), None)
        except UPSTREAM_TROUBLE as exc:
            log.info("referrers API of %s unreachable: %s", route.upstream_repository, exc.message)
            native = None
        except RegistryError:
            native = None
        if native is not None:
            return _manifests_of(native)
        fallback_tag = f"{subject.algorithm}-{subject.hex}"
        try:
            answer = await self._manifests.get(route, fallback_tag, None)
        except (ManifestUnknown, NameUnknown):
            return []
        except UPSTREAM_TROUBLE as exc:
            log.info("referrers tag of %s unreachable: %s", route.repository, exc.message)
            return []
        return _manifests_of(answer.manifest.content)


def _paginate(tags: list[str], more: bool, n: int | None, last: str | None) -> TagPage:
    """Lexical order and `n`/`last`, whether or not upstream applied them (distribution 2.8
    ignores `n` for tags and answers in storage order)."""
    ordered = sorted(t for t in set(tags) if last is None or t > last)
    if n is not None and len(ordered) > n:
        return TagPage(ordered[:n], True, from_cache=False)
    return TagPage(ordered, more, from_cache=False)


def _manifests_of(content: bytes) -> list[Any]:
    try:
        doc = json.loads(content)
    except ValueError:
        return []
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    return manifests if isinstance(manifests, list) else []
