"""The vulnerability database: OSV advisories and what was imported (scanning/vulndb).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "vulndb_advisories",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("modified", sa.Float(), nullable=False),
        sa.Column("withdrawn", sa.Float(), nullable=True),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("source", sa.String(length=2048), nullable=False),
        sa.Column("imported_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "vulndb_packages",
        sa.Column("ecosystem_base", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ecosystem", sa.String(length=255), nullable=False),
        sa.Column("advisory_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("ecosystem_base", "name", "ecosystem", "advisory_id"),
    )
    op.create_index("ix_vulndb_packages_advisory", "vulndb_packages", ["advisory_id"], unique=False)
    op.create_table(
        "vulndb_sources",
        sa.Column("ecosystem_base", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=2048), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ecosystem_base"),
    )
    op.create_table(
        "vulndb_archives",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("etag", sa.String(length=1024), nullable=True),
        sa.Column("last_modified", sa.String(length=255), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.Column("fetched_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("vulndb_archives")
    op.drop_table("vulndb_sources")
    op.drop_index("ix_vulndb_packages_advisory", table_name="vulndb_packages")
    op.drop_table("vulndb_packages")
    op.drop_table("vulndb_advisories")
