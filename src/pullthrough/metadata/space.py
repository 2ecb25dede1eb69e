"""Queries for space that manages itself: the images a repository holds, expiring them, pull
times, and the blobs garbage collection may take. All SQL over timestamps, for SQLite and
PostgreSQL alike; the decisions (which image, when) belong to `lifecycle/`.

Every query that takes cached content away moves the CONTENT revision in its transaction, so
what worker processes remember of it (the manifest memo) is dropped (metadata/revisions.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.images import CachedImage
from pullthrough.metadata.revisions import CONTENT, bump
from pullthrough.metadata.rules import SEEDED
from pullthrough.metadata.upserts import upsert

# Keeps `IN (…)` lists well under SQLite's and asyncpg's bound-parameter limits.
_CHUNK = 500

# (repository id, manifest digest) -> (last pulled at, pulls since the last flush)
PullBatch = Mapping[tuple[int, str], tuple[float, int]]


@dataclass(frozen=True, slots=True)
class ExpiredSummary:
    """What expiring images removed from the metadata (blobs are left to garbage collection)."""

    images: int = 0
    manifests_unlinked: int = 0  # repository_manifests rows: the images and their children
    manifests_deleted: int = 0  # manifests no repository holds any more
    tags: int = 0
    blob_links: int = 0

    def __add__(self, other: ExpiredSummary) -> ExpiredSummary:
        return ExpiredSummary(
            images=self.images + other.images,
            manifests_unlinked=self.manifests_unlinked + other.manifests_unlinked,
            manifests_deleted=self.manifests_deleted + other.manifests_deleted,
            tags=self.tags + other.tags,
            blob_links=self.blob_links + other.blob_links,
        )


@dataclass(frozen=True, slots=True)
class DroppedRepository:
    """A repository whose rule was deleted, dropped with everything it held but the blobs."""

    name: str
    rule: str
    expired: ExpiredSummary


@dataclass(frozen=True, slots=True)
class StoredBlobRecord:
    digest: str
    size: int


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _descendants(roots: Iterable[str], children: Mapping[str, Collection[str]]) -> set[str]:
    """Every manifest reachable from `roots` through index → child references, roots excluded."""
    found: set[str] = set()
    stack = [child for root in roots for child in children.get(root, ())]
    while stack:
        digest = stack.pop()
        if digest not in found:
            found.add(digest)
            stack.extend(children.get(digest, ()))
    return found


def _blob_referenced() -> ColumnElement[bool]:
    """Whether some manifest that still exists references the `blobs` row at hand."""
    mr, m = schema.manifest_references, schema.manifests
    return exists(
        select(mr.c.target_digest)
        .join(m, m.c.digest == mr.c.manifest_digest)
        .where(mr.c.target_digest == schema.blobs.c.digest)
    )


class SpaceStore:
    """Images, expiry, pull times and garbage, over the engine a MetadataStore opened."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # Repositories and their images

    async def repositories(self) -> list[tuple[int, str]]:
        """(id, name) of every repository, by name."""
        r = schema.repositories
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(r.c.id, r.c.name).order_by(r.c.name))
            return [(int(row.id), str(row.name)) for row in rows]

    async def _repository_id(self, conn: AsyncConnection, repository: str) -> int | None:
        r = schema.repositories
        value = (await conn.execute(select(r.c.id).where(r.c.name == repository))).scalar()
        return None if value is None else int(value)

    async def _references(
        self, conn: AsyncConnection, repository_id: int
    ) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """(manifest → child manifests, manifest → blobs) over the manifests a repository holds."""
        mr, rm = schema.manifest_references, schema.repository_manifests
        query = (
            select(mr.c.manifest_digest, mr.c.target_digest, mr.c.kind)
            .join(rm, rm.c.digest == mr.c.manifest_digest)
            .where(rm.c.repository_id == repository_id)
        )
        children: dict[str, set[str]] = {}
        blobs: dict[str, set[str]] = {}
        for row in await conn.execute(query):
            into = children if row.kind == "manifest" else blobs
            into.setdefault(row.manifest_digest, set()).add(row.target_digest)
        return children, blobs

    async def images(self, repository: str) -> list[CachedImage]:
        """The repository's top-level manifests (not a child of an index it holds), each with
        its tags, times, the platform manifests it holds, and the bytes of its stored blobs."""
        rm, t, mp = schema.repository_manifests, schema.tags, schema.manifest_pulls
        b, mr = schema.blobs, schema.manifest_references
        async with self.engine.connect() as conn:
            repository_id = await self._repository_id(conn, repository)
            if repository_id is None:
                return []
            held = {
                row.digest: float(row.created_at)
                for row in await conn.execute(
                    select(rm.c.digest, rm.c.created_at).where(rm.c.repository_id == repository_id)
                )
            }
            children, blob_refs = await self._references(conn, repository_id)
            tags: dict[str, list[str]] = {}
            for row in await conn.execute(
                select(t.c.name, t.c.digest).where(t.c.repository_id == repository_id)
            ):
                tags.setdefault(row.digest, []).append(row.name)
            pulls = {
                row.digest: float(row.last_pulled_at)
                for row in await conn.execute(
                    select(mp.c.digest, mp.c.last_pulled_at).where(
                        mp.c.repository_id == repository_id
                    )
                )
            }
            stored_query = (
                select(b.c.digest, b.c.size)
                .distinct()
                .join(mr, mr.c.target_digest == b.c.digest)
                .join(rm, rm.c.digest == mr.c.manifest_digest)
                .where(rm.c.repository_id == repository_id, mr.c.kind == "blob")
            )
            sizes = {row.digest: int(row.size) for row in await conn.execute(stored_query)}

        held_children = {
            digest: {child for child in targets if child in held}
            for digest, targets in children.items()
            if digest in held
        }
        nested = _descendants(held, held_children)
        images = []
        for digest in sorted(held.keys() - nested):
            family = _descendants([digest], held_children)
            members = [digest, *sorted(family)]
            pulled = [pulls[d] for d in members if d in pulls]
            blobs = set().union(*(blob_refs.get(d, set()) for d in members))
            images.append(
                CachedImage(
                    repository=repository,
                    digest=digest,
                    tags=tuple(sorted(tags.get(digest, ()))),
                    cached_at=held[digest],
                    last_pulled_at=max(pulled) if pulled else None,
                    children=tuple(sorted(family)),
                    size=sum(sizes[d] for d in blobs if d in sizes),
                )
            )
        return images

    async def expire(self, repository: str, digests: Iterable[str]) -> ExpiredSummary:
        """Remove images from `repository` in one transaction: their tags, the repository's
        hold on them and their children (a child another remaining image uses stays), its blob
        links that no remaining manifest of it references, and then the manifests no
        repository holds any more. Blobs themselves are left to garbage collection."""
        wanted = set(digests)
        async with self.engine.begin() as conn:
            repository_id = await self._repository_id(conn, repository)
            if repository_id is None or not wanted:
                return ExpiredSummary()
            summary = await self._expire_in(conn, repository_id, wanted)
            if summary.manifests_unlinked:
                await bump(conn, CONTENT)
            return summary

    async def _expire_in(
        self, conn: AsyncConnection, repository_id: int, wanted: set[str]
    ) -> ExpiredSummary:
        """`expire`'s work, inside the caller's transaction."""
        rm, t, mp = schema.repository_manifests, schema.tags, schema.manifest_pulls
        rb, mr, m = schema.repository_blobs, schema.manifest_references, schema.manifests
        held: set[str] = set(
            (
                await conn.execute(select(rm.c.digest).where(rm.c.repository_id == repository_id))
            ).scalars()
        )
        targets = wanted & held
        if not targets:
            return ExpiredSummary()
        children, blob_refs = await self._references(conn, repository_id)
        candidates = (targets | _descendants(targets, children)) & held
        still_used = _descendants(held - candidates, children)
        removed = candidates - still_used
        images = len(targets - still_used)
        blobs_of_removed = set().union(*(blob_refs.get(d, set()) for d in removed))

        tags = unlinked = blob_links = deleted = 0
        for chunk in _chunks(sorted(removed)):
            in_repository = rm.c.repository_id == repository_id
            tags += (
                await conn.execute(
                    t.delete().where(t.c.repository_id == repository_id, t.c.digest.in_(chunk))
                )
            ).rowcount
            await conn.execute(
                mp.delete().where(mp.c.repository_id == repository_id, mp.c.digest.in_(chunk))
            )
            unlinked += (
                await conn.execute(rm.delete().where(in_repository, rm.c.digest.in_(chunk)))
            ).rowcount
        # Decided in SQL after the deletes, so a manifest cached meanwhile keeps its links.
        remaining_reference = exists(
            select(mr.c.target_digest)
            .join(rm, rm.c.digest == mr.c.manifest_digest)
            .where(rm.c.repository_id == repository_id, mr.c.target_digest == rb.c.digest)
        )
        for chunk in _chunks(sorted(blobs_of_removed)):
            blob_links += (
                await conn.execute(
                    rb.delete().where(
                        rb.c.repository_id == repository_id,
                        rb.c.digest.in_(chunk),
                        ~remaining_reference,
                    )
                )
            ).rowcount
        for chunk in _chunks(sorted(removed)):
            held_anywhere: set[str] = set(
                (await conn.execute(select(rm.c.digest).where(rm.c.digest.in_(chunk)))).scalars()
            )
            tagged_anywhere: set[str] = set(
                (await conn.execute(select(t.c.digest).where(t.c.digest.in_(chunk)))).scalars()
            )
            orphans = sorted(set(chunk) - held_anywhere - tagged_anywhere)
            if orphans:
                await conn.execute(mr.delete().where(mr.c.manifest_digest.in_(orphans)))
                deleted += (await conn.execute(m.delete().where(m.c.digest.in_(orphans)))).rowcount
        return ExpiredSummary(
            images=images,
            manifests_unlinked=unlinked,
            manifests_deleted=deleted,
            tags=tags,
            blob_links=blob_links,
        )

    # Repositories whose rule was deleted

    async def repositories_without_rule(self) -> list[str]:
        """Repositories whose rule no longer exists, by name; none before the rules were first
        stored in this database (`RuleStore.seed`), since until then no rule is known gone."""
        r, rules, settings = (
            schema.repositories,
            schema.pull_through_rules,
            schema.registry_settings,
        )
        query = (
            select(r.c.name)
            .where(
                exists(select(settings.c.name).where(settings.c.name == SEEDED)),
                ~exists(select(rules.c.prefix).where(rules.c.prefix == r.c.rule_prefix)),
            )
            .order_by(r.c.name)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def drop_repository_without_rule(self, repository: str) -> DroppedRepository | None:
        """Drop `repository` with its images, tags, pull times, blob links and settings, in
        one transaction, if its rule is (still) gone; None when it is not. Blobs are left to
        garbage collection, which takes those no remaining manifest references."""
        r, rules = schema.repositories, schema.pull_through_rules
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(r.c.id, r.c.rule_prefix).where(
                        r.c.name == repository,
                        ~exists(select(rules.c.prefix).where(rules.c.prefix == r.c.rule_prefix)),
                    )
                )
            ).first()
            if row is None:
                return None  # its rule was created again meanwhile: it is served again
            repository_id = int(row.id)
            held: set[str] = set(
                (
                    await conn.execute(
                        select(schema.repository_manifests.c.digest).where(
                            schema.repository_manifests.c.repository_id == repository_id
                        )
                    )
                ).scalars()
            )
            expired = await self._expire_in(conn, repository_id, held)
            for table in (
                schema.tags,
                schema.manifest_pulls,
                schema.repository_blobs,
                schema.repository_settings,
            ):
                await conn.execute(table.delete().where(table.c.repository_id == repository_id))
            await conn.execute(r.delete().where(r.c.id == repository_id))
            await bump(conn, CONTENT)
        return DroppedRepository(repository, str(row.rule_prefix), expired)

    # Pull times

    async def record_pulls(self, batch: PullBatch) -> None:
        """Add a batch of pulls: the latest pull time wins, counts add up. Pulls of a repository
        dropped since (its rule was deleted) are left out: there is nothing to record them on."""
        if not batch:
            return
        mp, r = schema.manifest_pulls, schema.repositories
        async with self.engine.begin() as conn:
            pulled = sorted({repository_id for repository_id, _ in batch})
            existing: set[int] = set(
                (await conn.execute(select(r.c.id).where(r.c.id.in_(pulled)))).scalars()
            )
            rows = [
                {
                    "repository_id": repository_id,
                    "digest": digest,
                    "last_pulled_at": pulled_at,
                    "pull_count": count,
                }
                for (repository_id, digest), (pulled_at, count) in sorted(batch.items())
                if repository_id in existing
            ]
            if not rows:
                return
            stmt = upsert(
                conn,
                mp,
                None,
                lambda proposed: {
                    "last_pulled_at": case(
                        (mp.c.last_pulled_at > proposed.last_pulled_at, mp.c.last_pulled_at),
                        else_=proposed.last_pulled_at,
                    ),
                    "pull_count": mp.c.pull_count + proposed.pull_count,
                },
            )
            await conn.execute(stmt, rows)

    # Stored bytes and garbage

    async def stored_bytes(self) -> int:
        """The size of every stored blob, added up."""
        query = select(func.coalesce(func.sum(schema.blobs.c.size), 0))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def unreferenced_blobs(self, created_before: float) -> list[StoredBlobRecord]:
        """Stored blobs no existing manifest references, committed before `created_before`."""
        b = schema.blobs
        query = (
            select(b.c.digest, b.c.size)
            .where(b.c.created_at < created_before, ~_blob_referenced())
            .order_by(b.c.digest)
        )
        async with self.engine.connect() as conn:
            return [
                StoredBlobRecord(row.digest, int(row.size)) for row in await conn.execute(query)
            ]

    async def unreferenced_bytes(self, created_before: float) -> int:
        """What collecting `unreferenced_blobs(created_before)` would free."""
        b = schema.blobs
        query = select(func.coalesce(func.sum(b.c.size), 0)).where(
            b.c.created_at < created_before, ~_blob_referenced()
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def forget_unreferenced_blob(self, digest: str, created_before: float) -> bool:
        """Delete the blob's row and repository links if, now, no manifest references it and
        it was committed before `created_before`; False when it is in use (or gone) again."""
        b, rb = schema.blobs, schema.repository_blobs
        async with self.engine.begin() as conn:
            result = await conn.execute(
                b.delete().where(
                    b.c.digest == digest, b.c.created_at < created_before, ~_blob_referenced()
                )
            )
            if not result.rowcount:
                return False
            await conn.execute(rb.delete().where(rb.c.digest == digest))
            await bump(conn, CONTENT)
        return True

    async def blobs_present(self, digests: Iterable[str]) -> set[str]:
        """Which of `digests` have a `blobs` row."""
        b = schema.blobs
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for chunk in _chunks(dict.fromkeys(digests)):
                query = select(b.c.digest).where(b.c.digest.in_(chunk))
                found.update((await conn.execute(query)).scalars())
        return found
