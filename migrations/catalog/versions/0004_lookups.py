"""Lookup keys: the blind index (HMAC of kind and normalised value -> pseudonym).

Revision ID: c0004
Revises: c0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0004"
down_revision: str | None = "c0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lookups",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("blind", sa.String(64), primary_key=True),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lookups_pseudonym", "lookups", ["pseudonym", "kind"])


def downgrade() -> None:
    op.drop_index("ix_lookups_pseudonym", "lookups")
    op.drop_table("lookups")
