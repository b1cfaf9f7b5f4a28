"""The catalog (control database) schema: ``migrations/catalog``. Pseudonyms only."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

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
)
