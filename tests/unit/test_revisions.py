"""Revision counters: a bump in one process is seen by another's next read past the interval."""

from __future__ import annotations

from pullthrough.metadata.revisions import ACCESS, CONTENT, Revisions, bump
from pullthrough.metadata.store import MetadataStore
from tests.unit.space_support import metadata

__all__ = ["metadata"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_bump_is_seen_once_the_interval_has_passed(metadata: MetadataStore) -> None:
    clock = Clock()
    reader = Revisions(metadata.engine, interval=0.5, clock=clock)
    assert await reader.value(ACCESS) == 0

    async with metadata.engine.begin() as conn:
        await bump(conn, ACCESS)
        await bump(conn, ACCESS)
    # Within the interval the last reading stands; past it the bump shows.
    clock.now += 0.4
    assert await reader.value(ACCESS) == 0
    clock.now += 0.1
    assert await reader.value(ACCESS) == 2
    assert await reader.value(CONTENT) == 0


async def test_a_bump_rolls_back_with_its_change(metadata: MetadataStore) -> None:
    clock = Clock()
    reader = Revisions(metadata.engine, interval=0.5, clock=clock)

    class Abandon(Exception):
        pass

    try:
        async with metadata.engine.begin() as conn:
            await bump(conn, CONTENT)
            raise Abandon
    except Abandon:
        pass
    assert await reader.value(CONTENT) == 0
