"""Residency log: a pending queue (audit_pending), so audit_entries is insert-only.

Entries not yet integrated (idx NULL) move to the queue with their ids, and the queue's ids
continue above every id of the log, so integration order (by id) is unchanged. On PostgreSQL
audit_entries.id loses its default (its sequence stays, for the downgrade): ids now come from
the queue, and a stale default would collide with them. A row without an index is refused from
now on (a check, or a trigger on SQLite), so a router of an earlier release, which appends to
audit_entries, fails its writes rather than leave entries no integrator will pick up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

_INDEXED = "ck_audit_entries_indexed"
_UNINDEXED = "audit_entries takes integrated entries only; append to audit_pending"
_MOVE_PENDING = (
    "INSERT INTO audit_pending (id, leaf, subject)"
    " SELECT id, leaf, subject FROM audit_entries WHERE idx IS NULL ORDER BY id"
)
_MOVE_BACK = (
    "INSERT INTO audit_entries (id, leaf, subject)"
    " SELECT id, leaf, subject FROM audit_pending ORDER BY id"
)


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _continue_ids(table: str) -> None:
    """The next id ``table`` draws is above every id of the log (both tables hold some)."""
    if _postgresql():
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            " (SELECT coalesce(max(id), 0) + 1 FROM audit_entries), false)"
        )
    elif table == "audit_pending":  # SQLite's rowid ids of audit_entries follow max(id) anyway
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'audit_pending'")
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq)"
            " SELECT 'audit_pending', coalesce(max(id), 0) FROM audit_entries"
        )


def upgrade() -> None:
    # First, as it locks audit_entries exclusively (PostgreSQL): no 0001 writer is mid-append.
    op.drop_index("ix_audit_entries_pending", "audit_entries")
    op.create_table(
        "audit_pending",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sqlite_autoincrement=True,
    )
    op.execute(_MOVE_PENDING)
    _continue_ids("audit_pending")
    op.execute("DELETE FROM audit_entries WHERE idx IS NULL")
    if _postgresql():
        op.execute("ALTER TABLE audit_entries ALTER COLUMN id DROP DEFAULT")
        # NOT VALID: no scan of the log (the DELETE above already emptied what it would find).
        op.execute(
            f"ALTER TABLE audit_entries ADD CONSTRAINT {_INDEXED} CHECK (idx IS NOT NULL) NOT VALID"
        )
    else:  # SQLite adds a constraint only by rebuilding the table
        op.execute(
            f"CREATE TRIGGER {_INDEXED} BEFORE INSERT ON audit_entries WHEN NEW.idx IS NULL"
            f" BEGIN SELECT RAISE(ABORT, '{_UNINDEXED}'); END"
        )


def downgrade() -> None:
    if _postgresql():  # no append may commit into the queue after it is copied
        op.execute("LOCK TABLE audit_pending IN EXCLUSIVE MODE")
        op.execute(f"ALTER TABLE audit_entries DROP CONSTRAINT {_INDEXED}")
    else:
        op.execute(f"DROP TRIGGER {_INDEXED}")
    op.execute(_MOVE_BACK)
    if _postgresql():
        op.execute(
            "ALTER TABLE audit_entries ALTER COLUMN id"
            " SET DEFAULT nextval('audit_entries_id_seq'::regclass)"
        )
    _continue_ids("audit_entries")
    op.drop_table("audit_pending")
    op.create_index(
        "ix_audit_entries_pending",
        "audit_entries",
        ["id"],
        postgresql_where=sa.text("idx IS NULL"),
        sqlite_where=sa.text("idx IS NULL"),
    )
