"""Move journal and shard migration journal.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0002"
down_revision: str | None = "c0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "moves",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("jurisdiction", sa.String(2), nullable=False),
        sa.Column("from_shard", sa.String(63), nullable=False),
        sa.Column("to_shard", sa.String(63), nullable=False),
        sa.Column("placement_version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("records", sa.Integer, nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ux_moves_unfinished",
        "moves",
        ["pseudonym"],
        unique=True,
        postgresql_where=sa.text("finished_at IS NULL"),
        sqlite_where=sa.text("finished_at IS NULL"),
    )
    op.create_index("ix_moves_created", "moves", ["created_at"])
    op.create_table(
        "shard_migrations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("wave", sa.String(32), nullable=False),
        sa.Column("shard", sa.String(63), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_revision", sa.String(32), nullable=True),
        sa.Column("to_revision", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_shard_migrations_shard", "shard_migrations", ["shard", "id"])


def downgrade() -> None:
    op.drop_table("shard_migrations")
    op.drop_table("moves")
