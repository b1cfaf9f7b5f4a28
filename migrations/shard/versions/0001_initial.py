"""Initial shard schema: subjects, records, residency guard, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

_GUARD_MESSAGE = "domicile residency guard: jurisdiction not permitted on this shard"

_PG_GUARD = f"""
CREATE FUNCTION domicile_residency_guard() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM shard_jurisdictions WHERE code = NEW.jurisdiction) THEN
        RAISE EXCEPTION '{_GUARD_MESSAGE} (%)', NEW.jurisdiction
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

# Subjects are checked when they arrive (insert) or change jurisdiction; a subject already
# here when the policy changes may still be fenced, moved out and purged.
_GUARDED = {
    "subjects": ("INSERT", "UPDATE OF jurisdiction"),
    "records": ("INSERT", "UPDATE"),
}


def _create_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        for table, events in _GUARDED.items():
            op.execute(
                f"CREATE TRIGGER {table}_residency_guard BEFORE {' OR '.join(events)} "
                f"ON {table} FOR EACH ROW EXECUTE FUNCTION domicile_residency_guard()"
            )
        return
    for table, events in _GUARDED.items():
        for event in events:
            name = f"{table}_residency_guard_{event.split()[0].lower()}"
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                "WHEN NOT EXISTS (SELECT 1 FROM shard_jurisdictions WHERE code = NEW.jurisdiction) "
                f"BEGIN SELECT RAISE(ABORT, '{_GUARD_MESSAGE}'); END"
            )


def _drop_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _GUARDED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_residency_guard ON {table}")
        op.execute("DROP FUNCTION IF EXISTS domicile_residency_guard()")
        return
    for table, events in _GUARDED.items():
        for event in events:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_residency_guard_{event.split()[0].lower()}")


def upgrade() -> None:
    op.create_table(
        "shard_identity",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("region", sa.String(63), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table("shard_jurisdictions", sa.Column("code", sa.String(2), primary_key=True))
    op.create_table(
        "subjects",
        sa.Column("pseudonym", sa.String(64), primary_key=True),
        sa.Column("subject_id", sa.String(128), nullable=True),
        sa.Column("jurisdiction", sa.String(2), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("placement_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "records",
        sa.Column(
            "pseudonym",
            sa.String(64),
            sa.ForeignKey("subjects.pseudonym", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("collection", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("jurisdiction", sa.String(2), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("idx", sa.BigInteger, nullable=True, unique=True),
    )
    op.create_index("ix_audit_entries_subject", "audit_entries", ["subject"])
    op.create_index(
        "ix_audit_entries_pending",
        "audit_entries",
        ["id"],
        postgresql_where=sa.text("idx IS NULL"),
        sqlite_where=sa.text("idx IS NULL"),
    )
    op.create_table(
        "audit_state",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    _create_guards()


def downgrade() -> None:
    _drop_guards()
    for table in (
        "audit_checkpoints",
        "audit_nodes",
        "audit_state",
        "audit_entries",
        "records",
        "subjects",
        "shard_jurisdictions",
        "shard_identity",
    ):
        op.drop_table(table)
