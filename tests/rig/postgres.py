"""Databases of their own on the machine's PostgreSQL (127.0.0.1:5432, trust auth), for tests
that run servers on PostgreSQL: created empty, dropped afterwards (with the sessions still on it).
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
_ADMIN_DATABASE = "test"


async def _admin(statement: str) -> None:
    engine = create_async_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:5432/{_ADMIN_DATABASE}",
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _run_admin(statement: str) -> None:
    # A thread of its own: the caller may be a test running in an event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(_admin(statement))).result()


def create_database() -> str:
    """A new, empty database; its URL (`postgresql://…`, as `database_url` takes it)."""
    name = f"pullthrough_{secrets.token_hex(6)}"
    _run_admin(f"CREATE DATABASE {name}")
    return f"{POSTGRES}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _run_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
