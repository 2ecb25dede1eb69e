"""INSERT … ON CONFLICT DO UPDATE, in the dialect of the connection (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def upsert(
    conn: AsyncConnection, table: Table, values: dict[str, Any], update: dict[str, Any]
) -> Any:
    """Insert `values`, or apply `update` to the row with the same primary key."""
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return (
        insert(table)
        .values(**values)
        .on_conflict_do_update(index_elements=list(table.primary_key), set_=update)
    )


def insert_ignore(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> Any:
    """Insert `values` unless a row with the same primary key exists."""
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table).values(**values).on_conflict_do_nothing()
