"""Alembic's entry point: run the migrations over the connection in `config.attributes`, inside
the transaction the caller began (there is no alembic.ini; `migrating.py` builds the config)."""

from __future__ import annotations

from alembic import context

from pullthrough.metadata import schema

_connection = context.config.attributes["connection"]
context.configure(
    connection=_connection,
    target_metadata=schema.metadata,
    # SQLite alters a table by copying it; a revision written with batch operations runs on both.
    render_as_batch=_connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
