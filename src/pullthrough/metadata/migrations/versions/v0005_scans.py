"""Scan jobs, their results per image, and gate overrides (scanning/scans).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "scans",
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=2048), nullable=True),
        sa.Column("platform", sa.String(length=128), nullable=True),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("vulndb_revision", sa.BigInteger(), nullable=True),
        sa.Column("findings", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_scans_state", "scans", ["state"])
    op.create_table(
        "scan_overrides",
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("scan_overrides")
    op.drop_index("ix_scans_state", table_name="scans")
    op.drop_table("scans")
