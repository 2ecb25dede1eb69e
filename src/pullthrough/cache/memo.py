"""A worker's short memory of manifests it just served, so warm pulls skip the database.

Entries live at most `MEMO_SECONDS` (and a tag no longer than its freshness), so what other
workers or the lifecycle job change in the database is seen within that time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from pullthrough.metadata.store import StoredManifest, TaggedManifest

MEMO_SECONDS = 30.0
MAX_ENTRIES = 20_000

V = TypeVar("V")


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

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


class ManifestMemo:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._manifests: _Lru[StoredManifest] = _Lru(max_entries)
        self._tags: _Lru[TaggedManifest] = _Lru(max_entries)

    def manifest(self, repository: str, digest: str) -> StoredManifest | None:
        return self._manifests.get((repository, digest))

    def remember_manifest(self, repository: str, manifest: StoredManifest) -> None:
        self._manifests.put((repository, manifest.digest), manifest, MEMO_SECONDS)

    def tag(self, repository: str, tag: str) -> TaggedManifest | None:
        return self._tags.get((repository, tag))

    def remember_tag(self, repository: str, tag: str, tagged: TaggedManifest, ttl: float) -> None:
        """Remember a tag until it goes stale (at most MEMO_SECONDS)."""
        fresh_for = tagged.checked_at + ttl - time.time()
        self._tags.put((repository, tag), tagged, min(fresh_for, MEMO_SECONDS))
        self.remember_manifest(repository, tagged.manifest)
