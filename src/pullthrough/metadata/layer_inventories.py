"""What each layer holds for scanning, kept by layer digest: a layer shared by many images is
read once. The document is the inventory reader's JSON; its `format` says which reader wrote it,
so a row an older reader wrote is not trusted (`get` returns None for it)."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pullthrough.metadata import schema
from pullthrough.metadata.upserts import upsert_replacing


class LayerInventoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, digest: str, format: int) -> dict[str, Any] | None:
        """The layer's document as written in `format`; None when there is none (or only one
        of another format)."""
        table = schema.layer_inventories
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(table.c.format, table.c.document).where(table.c.digest == digest)
                )
            ).first()
        if row is None or row.format != format:
            return None
        document: dict[str, Any] = json.loads(row.document)
        return document

    async def put(self, digest: str, format: int, document: dict[str, Any]) -> None:
        values = {
            "digest": digest,
            "format": format,
            "document": json.dumps(document, separators=(",", ":"), sort_keys=True),
            "created_at": time.time(),
        }
        async with self._engine.begin() as conn:
            await conn.execute(upsert_replacing(conn, schema.layer_inventories, values))

    async def delete(self, digests: list[str]) -> None:
        """Forget layers (their blobs were collected)."""
        if not digests:
            return
        table = schema.layer_inventories
        async with self._engine.begin() as conn:
            await conn.execute(table.delete().where(table.c.digest.in_(digests)))
