"""The catalog (control database) schema: ``migrations/catalog``. Pseudonyms only."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

#: Where each subject lives: pseudonym -> home shard, with a version for compare-and-swap.
directory = Table(
    "directory",
    metadata,
    Column("pseudonym", String(64), primary_key=True),
    Column("jurisdiction", String(2), nullable=False),
    Column("shard", String(63), nullable=False),
    Column("placement_version", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | active | moving
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

#: The move journal: one row per subject move, advanced step by step so that a crashed run can
#: be resumed or rolled back. At most one unfinished move per subject (the partial unique index):
#: that index is the lock two concurrent ``comply`` runs contend on.
moves = Table(
    "moves",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pseudonym", String(64), nullable=False),
    Column("jurisdiction", String(2), nullable=False),
    Column("from_shard", String(63), nullable=False),
    Column("to_shard", String(63), nullable=False),
    Column("placement_version", Integer, nullable=False),  # the version the move switches from
    Column("state", String(16), nullable=False),
    Column("reason", String(16), nullable=False),  # move | comply | drain
    Column("records", Integer, nullable=True),
    Column("digest", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index(
        "ux_moves_unfinished",
        "pseudonym",
        unique=True,
        postgresql_where=text("finished_at IS NULL"),
        sqlite_where=text("finished_at IS NULL"),
    ),
    Index("ix_moves_created", "created_at"),
)

#: The schema migration journal: one row per revision step applied (or attempted) on a shard.
shard_migrations = Table(
    "shard_migrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("wave", String(32), nullable=False),
    Column("shard", String(63), nullable=False),
    Column("action", String(16), nullable=False),  # upgrade | downgrade
    Column("from_revision", String(32), nullable=True),
    Column("to_revision", String(32), nullable=True),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_shard_migrations_shard", "shard", "id"),
)

#: The blind index of lookup keys: HMAC-SHA256(lookup secret, kind || 0x00 || normalised value)
#: -> the subject's pseudonym, one subject per value and kind. A claim is ``pending`` (held by
#: ``owner``, a process, until it is written on the home shard) and then ``active``.
lookups = Table(
    "lookups",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("blind", String(64), primary_key=True),
    Column("pseudonym", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # pending | active
    Column("owner", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_lookups_pseudonym", "pseudonym", "kind"),
)
