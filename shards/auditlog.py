"""Appending residency-log entries, always inside the caller's shard transaction, so an entry
commits exactly when its change does. Entries wait in the log's queue (``audit_pending``) until
the log store's integrator (``shards.log_store``) gives them leaf indices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit.events import Actor, LeafMaker, LogSite, make_leaf
from domicile.shards.registry import Shard
from domicile.shards.schema import audit_pending

# A batch in one statement: an executemany sends and executes a statement per row.
_APPEND_MANY_PG = text(
    "INSERT INTO audit_pending (leaf, subject)"
    " SELECT * FROM unnest(CAST(:leaves AS bytea[]), CAST(:subjects AS text[]))"
)


@dataclass(frozen=True)
class Change:
    """What one entry of ``append_entries`` records: ``append_entry``'s arguments."""

    event: str
    subject: str | None
    jurisdiction: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)


def site_of(shard: Shard) -> LogSite:
    return LogSite(shard.name, shard.region.name, shard.region.country)


def shard_leaf(
    shard: Shard,
    event: str,
    actor: Actor,
    *,
    subject: str | None,
    jurisdiction: str | None,
    **fields: Any,
) -> bytes:
    """The leaf of an entry of ``shard``'s log: every way of appending one starts here."""
    return make_leaf(
        site_of(shard), event, actor, subject=subject, jurisdiction=jurisdiction, **fields
    )


def shard_leaves(
    shard: Shard, event: str, actor: Actor, *, time: datetime, **shared: Any
) -> LeafMaker:
    """``shard_leaf`` for many entries sharing their event, actor, time and ``shared`` fields."""
    return LeafMaker(site_of(shard), event, actor, time=time, **shared)


async def append_entry(
    conn: AsyncConnection,
    shard: Shard,
    event: str,
    actor: Actor,
    *,
    subject: str | None,
    jurisdiction: str | None,
    **fields: Any,
) -> None:
    leaf = shard_leaf(shard, event, actor, subject=subject, jurisdiction=jurisdiction, **fields)
    await conn.execute(insert(audit_pending).values(leaf=leaf, subject=subject))


async def append_entries(
    conn: AsyncConnection, shard: Shard, actor: Actor, changes: Iterable[Change]
) -> int:
    """Append one entry per change, in order, with one statement; returns how many."""
    leaves: list[bytes] = []
    subjects: list[str | None] = []
    for change in changes:
        leaves.append(
            shard_leaf(
                shard,
                change.event,
                actor,
                subject=change.subject,
                jurisdiction=change.jurisdiction,
                **change.fields,
            )
        )
        subjects.append(change.subject)
    await append_leaves(conn, leaves, subjects)
    return len(leaves)


async def append_leaves(
    conn: AsyncConnection, leaves: Sequence[bytes], subjects: Sequence[str | None]
) -> None:
    """Append entries whose leaves are made (``shard_leaf``), in order, with one statement."""
    if not leaves:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(_APPEND_MANY_PG, {"leaves": leaves, "subjects": subjects})
    else:  # SQLite runs an executemany as fast as one statement, and has no arrays
        rows = [{"leaf": leaf, "subject": s} for leaf, s in zip(leaves, subjects, strict=True)]
        await conn.execute(insert(audit_pending), rows)


def leaf_around_version(
    shard: Shard,
    event: str,
    actor: Actor,
    *,
    subject: str | None,
    jurisdiction: str | None,
    **fields: Any,
) -> tuple[bytes, bytes]:
    """The leaf of an entry whose ``version`` is known only inside the statement that writes
    it, as the bytes before and after that number: RFC 8785 writes an integer as its decimal
    digits, so the database splices them in and the leaf is exactly ``make_leaf``'s."""
    leaf = shard_leaf(
        shard, event, actor, subject=subject, jurisdiction=jurisdiction, version=0, **fields
    )
    # The key occurs once: inside a JSON string a quote is escaped, so '"version":' is the key.
    head, marker, tail = leaf.partition(b'"version":0')
    assert marker, "the leaf has no version"
    return head + b'"version":', tail
