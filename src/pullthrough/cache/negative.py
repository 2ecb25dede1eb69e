"""Remember upstream 404s briefly, so retry storms for a missing tag don't reach upstream."""

from __future__ import annotations

import time
from collections.abc import Hashable

from pullthrough.errors import RegistryError

_MAX_ENTRIES = 10_000


class NegativeCache:
    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, RegistryError]] = {}

    def remember(self, key: Hashable, error: RegistryError, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._evict_expired()
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + ttl, error)

    def check(self, key: Hashable) -> None:
        """Raise the remembered error for `key`, if it is still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return
        expires, error = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return
        raise type(error)(error.message, detail=error.detail, headers=error.headers)

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def _evict_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
