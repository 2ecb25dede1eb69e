"""What counts as cached: a repository is listed and counted only while it holds something.

A repository row outlives its content (expiry empties it; it keeps the settings a template
gave it), so listings, `_catalog` and `status` ask this instead of whether the row exists.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select

from pullthrough.metadata import schema


def holds_content(repository_id: Any) -> ColumnElement[bool]:
    """Whether the repository with id `repository_id` (a column or a value) holds a manifest or
    a stored blob fetched through it."""
    rm, rb, b = schema.repository_manifests, schema.repository_blobs, schema.blobs
    return or_(
        exists(select(rm.c.digest).where(rm.c.repository_id == repository_id)),
        exists(
            select(rb.c.digest)
            .join(b, b.c.digest == rb.c.digest)
            .where(rb.c.repository_id == repository_id)
        ),
    )
