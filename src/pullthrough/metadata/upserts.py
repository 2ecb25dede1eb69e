"""INSERT … ON CONFLICT, in the dialect of the connection (SQLite or PostgreSQL): the one place
that picks the dialect's insert, so every other query module writes plain SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

# What to set on the row already there: fixed values, or a function of the proposed row
# (`excluded`, whose columns name the values the insert would have written).
Update = Mapping[str, Any] | Callable[[Any], Mapping[str, Any]]


def _insert(conn: AsyncConnection, table: Table) -> Any:
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table)


def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any] | None,
    update: Update,
    *,
    where: ColumnElement[bool] | None = None,
) -> Any:
    """Insert `values`, or apply `update` to the row with the same primary key (only where
    `where` holds, when given). With `values` None, the rows are the ones passed to `execute`
    along with the statement."""
    stmt = _insert(conn, table)
    if values is not None:
        stmt = stmt.values(**values)
    changes = update(stmt.excluded) if callable(update) else update
    return stmt.on_conflict_do_update(
        index_elements=list(table.primary_key), set_=dict(changes), where=where
    )


def upsert_replacing(conn: AsyncConnection, table: Table, values: Mapping[str, Any]) -> Any:
    """Insert `values`, or overwrite the row with the same primary key with them, all but its
    key and its `created_at`."""
    keys = {column.name for column in table.primary_key}
    update = {k: v for k, v in values.items() if k not in keys and k != "created_at"}
    return upsert(conn, table, values, update)


def insert_ignore(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any] | None = None
) -> Any:
    """Insert `values` unless that would clash with a row already there (on any unique key).
    With `values` None, the rows are the ones passed to `execute` along with the statement."""
    stmt = _insert(conn, table)
    if values is not None:
        stmt = stmt.values(**values)
    return stmt.on_conflict_do_nothing()
