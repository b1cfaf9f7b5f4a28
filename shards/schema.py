"""The schema of every shard database (one alembic history, ``migrations/shard``).

Raw subject ids and record contents live only here, on the subject's home shard. The audit
tables hold pseudonyms only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: One row: which shard this database is, so a misconfigured URL is caught on start.
shard_identity = Table(
    "shard_identity",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("region", String(63), nullable=False),
    Column("country", String(2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: The jurisdictions this shard may hold; the residency guard triggers read it.
shard_jurisdictions = Table(
    "shard_jurisdictions",
    metadata,
    Column("code", String(2), primary_key=True),
)

#: Subjects homed here, and tombstones (fences) of subjects that moved away.
subjects = Table(
    "subjects",
    metadata,
    Column("pseudonym", String(64), primary_key=True),
    Column("subject_id", String(128), nullable=True),  # NULL once the subject has left
    Column("jurisdiction", String(2), nullable=False),
    Column("state", String(16), nullable=False),  # home | moving_out | moving_in | gone
    Column("placement_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

records = Table(
    "records",
    metadata,
    Column(
        "pseudonym",
        String(64),
        ForeignKey("subjects.pseudonym", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("collection", String(64), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("data", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("jurisdiction", String(2), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Lookup keys of the subjects homed here: the value as given, its normalised form (for
#: re-keying) and its blind value, the only form of it the catalog holds.
lookups = Table(
    "lookups",
    metadata,
    Column(
        "pseudonym",
        String(64),
        ForeignKey("subjects.pseudonym", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(32), primary_key=True),
    Column("value", Text, nullable=False),
    Column("normalized", Text, nullable=False),
    Column("blind", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: The residency log's queue: an entry is appended here in the transaction of its change, and
#: leaves it for ``audit_entries`` when the log's single integrator gives it its leaf index. Ids
#: keep growing across both tables (SQLite: AUTOINCREMENT, as the queue is often empty).
audit_pending = Table(
    "audit_pending",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("leaf", LargeBinary, nullable=False),
    Column("subject", String(64), nullable=True),
    sqlite_autoincrement=True,
)

#: The integrated log, insert-only: an entry arrives with its leaf index ``idx`` and keeps its
#: queue ``id`` (the column has no default of its own since schema 0002). A row without ``idx``
#: is refused by a check (PostgreSQL) or trigger (SQLite) that 0002 adds, rather than NOT NULL,
#: which would scan (PostgreSQL) or rewrite (SQLite) the whole log under lock.
audit_entries = Table(
    "audit_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("leaf", LargeBinary, nullable=False),
    Column("subject", String(64), nullable=True),
    Column("idx", BigInteger, nullable=True, unique=True),
    Index("ix_audit_entries_subject", "subject"),
)

#: One row: the log's integrated tree size. Integrators lock it, so there is one at a time per
#: log however many router processes run.
audit_state = Table(
    "audit_state",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

#: Every perfect subtree of the Merkle tree, so proofs cost O(log n) lookups.
audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary, nullable=False),
)

#: Signed checkpoints issued, so consistency can be proven between any two.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
