"""Which principals exist, and with which credentials: one process's view, for checking tokens.

A registry token is verified on every request; asking the database each time whether its
principal still exists would cost a query per request. Instead each process remembers every
principal's credential stamp (`TokenSigner.stamp`) and forgets them all when the ACCESS revision
moves, which every write to principals does in its transaction (metadata/revisions.py). A
deleted principal, or one whose password or key changed, is refused within that bound.
"""

from __future__ import annotations

from typing import Protocol

from pullthrough.access.tokens import TokenSigner
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.revisions import ACCESS

_MAX_REMEMBERED = 16384


class RevisionSource(Protocol):
    """`metadata.revisions.Revisions`, or a fake of it in tests."""

    async def value(self, name: str) -> int: ...


class CredentialStamps:
    """Each principal's current credential stamp; None for a principal that does not exist."""

    def __init__(self, store: AccessStore, signer: TokenSigner, revisions: RevisionSource) -> None:
        self._store = store
        self._signer = signer
        self._revisions = revisions
        self._revision: int | None = None
        self._stamps: dict[str, str | None] = {}

    async def current(self) -> int:
        """The ACCESS revision now; what was remembered under an older one is forgotten."""
        revision = await self._revisions.value(ACCESS)
        if revision != self._revision:
            self._stamps.clear()
            self._revision = revision
        return revision

    async def of(self, name: str) -> str | None:
        revision = await self.current()
        if name in self._stamps:
            return self._stamps[name]
        row = await self._store.principal(name)
        stamp = None if row is None else self._signer.stamp(row.secret_hash)
        # Kept only if no change was seen while the row was read: otherwise the row may be
        # older than the revision this view now stands for.
        if self._revision == revision:
            if len(self._stamps) >= _MAX_REMEMBERED:
                self._stamps.clear()
            self._stamps[name] = stamp
        return stamp
