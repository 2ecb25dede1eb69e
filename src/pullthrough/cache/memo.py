"""A worker's short memory of manifests it just served, so warm pulls skip the database.

Entries live at most `MEMO_SECONDS` (and a tag no longer than its freshness). Whatever takes
cached content away (expiry, the size cap, garbage collection, a repository dropped with its
rule) moves the CONTENT revision in its transaction; the memo forgets everything when it sees
that revision move, which it checks on each lookup at most every `REVISION_POLL_SECONDS`
(metadata/revisions.py). So an expired tag is a miss on every worker once `lifecycle run`
returns, not up to `MEMO_SECONDS` later.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from pullthrough.metadata.manifests import StoredManifest, TaggedManifest
from pullthrough.metadata.revisions import CONTENT

MEMO_SECONDS = 30.0
MAX_ENTRIES = 20_000

V = TypeVar("V")


class RevisionSource(Protocol):
    """`metadata.revisions.Revisions`, or a fake of it in tests."""

    async def value(self, name: str) -> int: ...


class _Lru(Generic[V]):
    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._max = max_entries

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class ManifestMemo:
    """Lookups return the CONTENT revision they were made under; a value read from the database
    after a lookup is remembered only if the memo has seen no removal since (the row may predate
    it otherwise)."""

    def __init__(self, revisions: RevisionSource, max_entries: int = MAX_ENTRIES) -> None:
        self._revisions = revisions
        self._revision: int | None = None
        self._manifests: _Lru[StoredManifest] = _Lru(max_entries)
        self._tags: _Lru[TaggedManifest] = _Lru(max_entries)

    async def current(self) -> int:
        """The CONTENT revision now; what was remembered under an older one is forgotten."""
        revision = await self._revisions.value(CONTENT)
        if revision != self._revision:
            self._manifests.clear()
            self._tags.clear()
            self._revision = revision
        return revision

    async def manifest(self, repository: str, digest: str) -> tuple[StoredManifest | None, int]:
        """(the remembered manifest or None, the revision of this lookup)."""
        revision = await self.current()
        return self._manifests.get((repository, digest)), revision

    async def tag(self, repository: str, tag: str) -> tuple[TaggedManifest | None, int]:
        """(the remembered tag or None, the revision of this lookup)."""
        revision = await self.current()
        return self._tags.get((repository, tag)), revision

    def remember_manifest(self, repository: str, manifest: StoredManifest, revision: int) -> None:
        if revision == self._revision:
            self._manifests.put((repository, manifest.digest), manifest, MEMO_SECONDS)

    def remember_tag(
        self, repository: str, tag: str, tagged: TaggedManifest, ttl: float, revision: int
    ) -> None:
        """Remember a tag until it goes stale (at most MEMO_SECONDS)."""
        if revision != self._revision:
            return
        fresh_for = tagged.checked_at + ttl - time.time()
        self._tags.put((repository, tag), tagged, min(fresh_for, MEMO_SECONDS))
        self.remember_manifest(repository, tagged.manifest, revision)
