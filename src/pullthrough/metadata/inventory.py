"""What the cache holds, for people: repositories, images and tags with sizes, platforms, when
they were cached and pulled, and through which rule, and the totals over all of it. Read-only
queries; `SpaceStore` decides what an image is (a top-level manifest with its platform
manifests)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.holdings import holds_content
from pullthrough.metadata.images import CachedImage
from pullthrough.metadata.space import SpaceStore

# Reads a stored blob (an image config, a few KiB) by digest; None when it is not stored.
ConfigReader = Callable[[str], Awaitable[bytes | None]]

_IMAGE_CONFIGS = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    rule: str
    created_at: float
    image_count: int
    tag_count: int
    size_bytes: int  # stored blobs its manifests reference, each counted once
    last_pulled_at: float | None
    pull_count: int  # manifest requests through it, every manifest of it counted


@dataclass(frozen=True, slots=True)
class ImageSummary:
    repository: str
    digest: str
    media_type: str
    size_bytes: int
    tags: tuple[str, ...]
    platforms: tuple[str, ...]  # `os/architecture[/variant]`, as far as known
    cached_at: float
    last_pulled_at: float | None
    pull_count: int  # requests for the image's manifest and its platform manifests
    rule: str


@dataclass(frozen=True, slots=True)
class CacheTotals:
    """How much the cache holds."""

    repositories: int
    manifests: int
    tags: int
    blobs: int
    blob_bytes: int


@dataclass(frozen=True, slots=True)
class TagSummary:
    name: str
    digest: str
    updated_at: float  # when upstream last confirmed the tag points at `digest`


def platform_name(platform: Any) -> str | None:
    """`linux/arm64/v8` from an index entry's `platform` or an image config; None when it
    names no real platform (attestation manifests say `unknown/unknown`)."""
    if not isinstance(platform, dict):
        return None
    os_name, architecture = platform.get("os"), platform.get("architecture")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return None
    if not os_name or not architecture or "unknown" in (os_name, architecture):
        return None
    variant = platform.get("variant")
    name = f"{os_name}/{architecture}"
    return f"{name}/{variant}" if isinstance(variant, str) and variant else name


def _top_level(rm: Any) -> Any:
    """Whether the repository_manifests row `rm` is no platform manifest of an index the same
    repository holds."""
    mr, parent = schema.manifest_references, schema.repository_manifests.alias("parent")
    parent_holds = and_(
        parent.c.digest == mr.c.manifest_digest, parent.c.repository_id == rm.c.repository_id
    )
    return ~exists(
        select(mr.c.manifest_digest)
        .select_from(mr.join(parent, parent_holds))
        .where(mr.c.kind == "manifest", mr.c.target_digest == rm.c.digest)
    )


class Inventory:
    def __init__(self, engine: AsyncEngine, read_config: ConfigReader | None = None) -> None:
        self._engine = engine
        self._space = SpaceStore(engine)
        self._read_config = read_config

    async def repositories(
        self, prefix: str | None = None, limit: int | None = None
    ) -> list[RepositorySummary]:
        """Repositories that hold something, by name, those whose name starts with `prefix`,
        at most `limit`."""
        r = schema.repositories
        query = select(r.c.id).where(holds_content(r.c.id)).order_by(r.c.name)
        if prefix:
            query = query.where(r.c.name.startswith(prefix, autoescape=True))
        if limit is not None:
            query = query.limit(limit)
        return await self._summaries(query)

    async def repository(self, name: str) -> RepositorySummary | None:
        """The repository `name`; None when there is none or it holds nothing any more."""
        r = schema.repositories
        found = await self._summaries(select(r.c.id).where(r.c.name == name, holds_content(r.c.id)))
        return found[0] if found else None

    async def _summaries(self, ids: Select[Any]) -> list[RepositorySummary]:
        r, t, mp = schema.repositories, schema.tags, schema.manifest_pulls
        rm, mr, b = schema.repository_manifests, schema.manifest_references, schema.blobs
        chosen = ids.subquery()
        in_chosen = r.c.id.in_(select(chosen.c.id))
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(select(r).where(in_chosen).order_by(r.c.name)))
            tag_counts = await _grouped(
                conn,
                select(t.c.repository_id, func.count())
                .where(t.c.repository_id.in_(select(chosen.c.id)))
                .group_by(t.c.repository_id),
            )
            image_counts = await _grouped(
                conn,
                select(rm.c.repository_id, func.count())
                .where(rm.c.repository_id.in_(select(chosen.c.id)), _top_level(rm))
                .group_by(rm.c.repository_id),
            )
            referenced = (
                select(rm.c.repository_id, mr.c.target_digest)
                .distinct()
                .join(mr, mr.c.manifest_digest == rm.c.digest)
                .where(mr.c.kind == "blob", rm.c.repository_id.in_(select(chosen.c.id)))
                .subquery()
            )
            sizes = await _grouped(
                conn,
                select(referenced.c.repository_id, func.sum(b.c.size))
                .join(b, b.c.digest == referenced.c.target_digest)
                .group_by(referenced.c.repository_id),
            )
            pulls = {
                int(row[0]): (float(row[1]), int(row[2]))
                for row in await conn.execute(
                    select(
                        mp.c.repository_id, func.max(mp.c.last_pulled_at), func.sum(mp.c.pull_count)
                    )
                    .where(mp.c.repository_id.in_(select(chosen.c.id)))
                    .group_by(mp.c.repository_id)
                )
            }
        summaries = []
        for row in rows:
            last_pulled, pull_count = pulls.get(int(row.id), (None, 0))
            summaries.append(
                RepositorySummary(
                    name=row.name,
                    rule=row.rule_prefix,
                    created_at=float(row.created_at),
                    image_count=image_counts.get(int(row.id), 0),
                    tag_count=tag_counts.get(int(row.id), 0),
                    size_bytes=sizes.get(int(row.id), 0),
                    last_pulled_at=last_pulled,
                    pull_count=pull_count,
                )
            )
        return summaries

    async def images(self, repository: str) -> list[ImageSummary] | None:
        """The repository's images, newest first; None when there is no such repository."""
        r, m, mp = schema.repositories, schema.manifests, schema.manifest_pulls
        async with self._engine.connect() as conn:
            found = (await conn.execute(select(r).where(r.c.name == repository))).first()
        if found is None:
            return None
        cached = await self._space.images(repository)
        wanted = [image.digest for image in cached]
        async with self._engine.connect() as conn:
            manifests = {
                row.digest: (row.media_type, bytes(row.content))
                for row in await conn.execute(
                    select(m.c.digest, m.c.media_type, m.c.content).where(m.c.digest.in_(wanted))
                )
            }
            counts = {
                row.digest: int(row.pull_count)
                for row in await conn.execute(
                    select(mp.c.digest, mp.c.pull_count).where(mp.c.repository_id == found.id)
                )
            }
        images = []
        for image in cached:
            media_type, content = manifests.get(image.digest, ("", b""))
            images.append(
                ImageSummary(
                    repository=repository,
                    digest=image.digest,
                    media_type=media_type,
                    size_bytes=image.size,
                    tags=image.tags,
                    platforms=await self._platforms(content),
                    cached_at=image.cached_at,
                    last_pulled_at=image.last_pulled_at,
                    pull_count=sum(counts.get(d, 0) for d in _members(image)),
                    rule=found.rule_prefix,
                )
            )
        images.sort(key=lambda i: (-i.cached_at, i.digest))
        return images

    async def tags(self, repository: str) -> list[TagSummary] | None:
        """The repository's tags by name; None when there is no such repository."""
        r, t = schema.repositories, schema.tags
        async with self._engine.connect() as conn:
            repository_id = (
                await conn.execute(select(r.c.id).where(r.c.name == repository))
            ).scalar_one_or_none()
            if repository_id is None:
                return None
            rows = await conn.execute(
                select(t.c.name, t.c.digest, t.c.checked_at)
                .where(t.c.repository_id == repository_id)
                .order_by(t.c.name)
            )
            return [TagSummary(row.name, row.digest, float(row.checked_at)) for row in rows]

    async def totals(self) -> CacheTotals:
        """What is cached; a repository counts while it holds something."""

        def count(table: Table) -> Any:
            return select(func.count()).select_from(table).scalar_subquery()

        r = schema.repositories
        query = select(
            select(func.count())
            .select_from(r)
            .where(holds_content(r.c.id))
            .scalar_subquery()
            .label("repositories"),
            count(schema.manifests).label("manifests"),
            count(schema.tags).label("tags"),
            count(schema.blobs).label("blobs"),
            select(func.coalesce(func.sum(schema.blobs.c.size), 0))
            .scalar_subquery()
            .label("blob_bytes"),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return CacheTotals(
            repositories=int(row.repositories),
            manifests=int(row.manifests),
            tags=int(row.tags),
            blobs=int(row.blobs),
            blob_bytes=int(row.blob_bytes),
        )

    async def image_count(self) -> int:
        """Top-level images over all repositories (an index counts once, not its platforms)."""
        rm = schema.repository_manifests
        async with self._engine.connect() as conn:
            images = (
                await conn.execute(select(func.count()).select_from(rm).where(_top_level(rm)))
            ).scalar_one()
        return int(images)

    async def _platforms(self, content: bytes) -> tuple[str, ...]:
        try:
            document = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return ()
        if not isinstance(document, dict):
            return ()
        entries = document.get("manifests")
        if isinstance(entries, list):
            named = (platform_name(e.get("platform")) for e in entries if isinstance(e, dict))
            return tuple(dict.fromkeys(name for name in named if name))
        config = document.get("config")
        if self._read_config is None or not isinstance(config, dict):
            return ()
        if config.get("mediaType") not in _IMAGE_CONFIGS or not isinstance(
            config.get("digest"), str
        ):
            return ()
        raw = await self._read_config(config["digest"])
        if raw is None:
            return ()
        try:
            name = platform_name(json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            return ()
        return (name,) if name else ()


def _members(image: CachedImage) -> Iterable[str]:
    return (image.digest, *image.children)


async def _grouped(conn: AsyncConnection, query: Select[Any]) -> dict[int, int]:
    return {int(row[0]): int(row[1] or 0) for row in await conn.execute(query)}
