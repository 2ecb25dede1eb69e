"""Cache statistics over time, for the dashboard's charts: per rule and five-minute bucket.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cache_stats_history",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("misses", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_cache", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_upstream", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "bucket"),
    )
    op.create_index(
        "ix_cache_stats_history_bucket", "cache_stats_history", ["bucket"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_cache_stats_history_bucket", table_name="cache_stats_history")
    op.drop_table("cache_stats_history")
