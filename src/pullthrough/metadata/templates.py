"""Repository creation templates, and the settings each repository got from one.

A template's prefix is a path prefix of repository names (usually a rule's prefix, like
`docker-hub`) or `ROOT`, which applies to every repository no other template matches. The
longest matching prefix wins. Settings are copied when the cache creates a repository, so
editing a template later changes only repositories created after the edit, as in ECR.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.template_names import PULL_THROUGH_CACHE, ROOT
from pullthrough.metadata.upserts import upsert_replacing


@dataclass(frozen=True, slots=True)
class CreationTemplate:
    prefix: str
    lifecycle_policy: str | None = None  # ECR lifecycle policy, JSON text
    scan_on_pull: bool = False
    description: str | None = None
    applied_for: tuple[str, ...] = (PULL_THROUGH_CACHE,)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    repository: str
    template_prefix: str | None
    lifecycle_policy: str | None
    scan_on_pull: bool
    updated_at: float


def matching_template(
    templates: list[CreationTemplate], repository: str
) -> CreationTemplate | None:
    """The template for a new repository: the longest prefix of its name, else ROOT."""
    usable = [t for t in templates if PULL_THROUGH_CACHE in t.applied_for]
    by_prefix = [
        t
        for t in usable
        if t.prefix != ROOT and (repository == t.prefix or repository.startswith(t.prefix + "/"))
    ]
    if by_prefix:
        return max(by_prefix, key=lambda t: len(t.prefix))
    return next((t for t in usable if t.prefix == ROOT), None)


def _template(row: Any) -> CreationTemplate:
    return CreationTemplate(
        prefix=row.prefix,
        lifecycle_policy=row.lifecycle_policy,
        scan_on_pull=bool(row.scan_on_pull),
        description=row.description,
        applied_for=tuple(json.loads(row.applied_for)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def templates_in(conn: AsyncConnection) -> list[CreationTemplate]:
    rows = await conn.execute(select(schema.creation_templates))
    return [_template(row) for row in rows]


async def apply_template(conn: AsyncConnection, repository_id: int, repository: str) -> None:
    """Copy the matching template's settings onto a repository the cache just created."""
    template = matching_template(await templates_in(conn), repository)
    if template is None:
        return
    await conn.execute(
        upsert_replacing(
            conn,
            schema.repository_settings,
            {
                "repository_id": repository_id,
                "template_prefix": template.prefix,
                "lifecycle_policy": template.lifecycle_policy,
                "scan_on_pull": int(template.scan_on_pull),
                "updated_at": time.time(),
            },
        )
    )


class TemplateStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, template: CreationTemplate) -> None:
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(
                upsert_replacing(
                    conn,
                    schema.creation_templates,
                    {
                        "prefix": template.prefix,
                        "applied_for": json.dumps(list(template.applied_for)),
                        "lifecycle_policy": template.lifecycle_policy,
                        "scan_on_pull": int(template.scan_on_pull),
                        "description": template.description,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            )

    async def all(self) -> list[CreationTemplate]:
        async with self.engine.connect() as conn:
            return sorted(await templates_in(conn), key=lambda t: t.prefix)

    async def delete(self, prefix: str) -> bool:
        table = schema.creation_templates
        async with self.engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.prefix == prefix))
        return bool(result.rowcount)

    async def settings(self, repository: str) -> RepositorySettings | None:
        s, r = schema.repository_settings, schema.repositories
        query = (
            select(s, r.c.name).join(r, r.c.id == s.c.repository_id).where(r.c.name == repository)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return RepositorySettings(
            repository=row.name,
            template_prefix=row.template_prefix,
            lifecycle_policy=row.lifecycle_policy,
            scan_on_pull=bool(row.scan_on_pull),
            updated_at=row.updated_at,
        )

    async def set_lifecycle_policy(self, repository: str, policy: str | None) -> bool:
        """Give a repository its own lifecycle policy (None removes it); False if unknown."""
        r = schema.repositories
        async with self.engine.begin() as conn:
            repo_id = (
                await conn.execute(select(r.c.id).where(r.c.name == repository))
            ).scalar_one_or_none()
            if repo_id is None:
                return False
            current = (
                await conn.execute(
                    select(schema.repository_settings).where(
                        schema.repository_settings.c.repository_id == repo_id
                    )
                )
            ).first()
            await conn.execute(
                upsert_replacing(
                    conn,
                    schema.repository_settings,
                    {
                        "repository_id": repo_id,
                        "template_prefix": current.template_prefix if current else None,
                        "lifecycle_policy": policy,
                        "scan_on_pull": current.scan_on_pull if current else 0,
                        "updated_at": time.time(),
                    },
                )
            )
        return True
