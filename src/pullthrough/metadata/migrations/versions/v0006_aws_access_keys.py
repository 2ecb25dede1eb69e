"""AWS access keys of principals, for the ECR-compatible API (access/aws_keys); the signatures
of accepted signed requests (replays refused); lifecycle policy previews.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "aws_access_keys",
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_index("ix_aws_access_keys_principal", "aws_access_keys", ["principal"])
    op.create_table(
        "aws_request_signatures",
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index(
        "ix_aws_request_signatures_expires_at", "aws_request_signatures", ["expires_at"]
    )
    op.create_table(
        "lifecycle_previews",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("repository"),
    )


def downgrade() -> None:
    op.drop_table("lifecycle_previews")
    op.drop_index("ix_aws_request_signatures_expires_at", table_name="aws_request_signatures")
    op.drop_table("aws_request_signatures")
    op.drop_index("ix_aws_access_keys_principal", table_name="aws_access_keys")
    op.drop_table("aws_access_keys")
