"""The baseline: the schema as the first release created it, before migrations existed.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "cache_stats",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("misses", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_cache", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_upstream", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prefix"),
    )
    op.create_table(
        "creation_templates",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("applied_for", sa.String(length=255), nullable=False),
        sa.Column("lifecycle_policy", sa.String(), nullable=True),
        sa.Column("scan_on_pull", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prefix"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "manifests",
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.String(length=150), nullable=True),
        sa.Column("artifact_type", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_manifests_subject", "manifests", ["subject"], unique=False)
    op.create_table(
        "principals",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=True),
        sa.Column("groups", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "pull_through_rules",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prefix"),
    )
    op.create_table(
        "registry_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "registry_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("rule_prefix", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_repositories_name"),
    )
    op.create_table(
        "revisions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "upstream_challenges",
        sa.Column("origin", sa.String(length=512), nullable=False),
        sa.Column("scheme", sa.String(length=16), nullable=False),
        sa.Column("realm", sa.String(length=2048), nullable=True),
        sa.Column("service", sa.String(length=512), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("origin"),
    )
    op.create_table(
        "upstream_health",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("last_success_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("last_error_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prefix"),
    )
    op.create_table(
        "upstream_state",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=True),
        sa.Column("ratelimit_limit", sa.Integer(), nullable=True),
        sa.Column("ratelimit_remaining", sa.Integer(), nullable=True),
        sa.Column("ratelimit_window", sa.Integer(), nullable=True),
        sa.Column("ratelimit_source", sa.String(length=255), nullable=True),
        sa.Column("ratelimit_seen_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prefix"),
    )
    op.create_table(
        "manifest_pulls",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("last_pulled_at", sa.Float(), nullable=False),
        sa.Column("pull_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest"),
    )
    op.create_table(
        "manifest_references",
        sa.Column("manifest_digest", sa.String(length=150), nullable=False),
        sa.Column("target_digest", sa.String(length=150), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_digest"],
            ["manifests.digest"],
        ),
        sa.PrimaryKeyConstraint("manifest_digest", "target_digest"),
    )
    op.create_index(
        "ix_manifest_references_target", "manifest_references", ["target_digest"], unique=False
    )
    op.create_table(
        "repository_blobs",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest"),
    )
    op.create_table(
        "repository_manifests",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["manifests.digest"],
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest"),
    )
    op.create_table(
        "repository_settings",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("template_prefix", sa.String(length=255), nullable=True),
        sa.Column("lifecycle_policy", sa.String(), nullable=True),
        sa.Column("scan_on_pull", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
        ),
        sa.PrimaryKeyConstraint("repository_id"),
    )
    op.create_table(
        "tags",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["manifests.digest"],
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
        ),
        sa.PrimaryKeyConstraint("repository_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("tags")
    op.drop_table("repository_settings")
    op.drop_table("repository_manifests")
    op.drop_table("repository_blobs")
    op.drop_index("ix_manifest_references_target", table_name="manifest_references")
    op.drop_table("manifest_references")
    op.drop_table("manifest_pulls")
    op.drop_table("upstream_state")
    op.drop_table("upstream_health")
    op.drop_table("upstream_challenges")
    op.drop_table("secrets")
    op.drop_table("revisions")
    op.drop_table("repositories")
    op.drop_table("registry_settings")
    op.drop_table("registry_policy")
    op.drop_table("pull_through_rules")
    op.drop_table("principals")
    op.drop_index("ix_manifests_subject", table_name="manifests")
    op.drop_table("manifests")
    op.drop_table("leases")
    op.drop_table("creation_templates")
    op.drop_table("cache_stats")
    op.drop_table("blobs")
