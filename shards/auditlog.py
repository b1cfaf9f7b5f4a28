"""Appending residency-log entries, always inside the caller's shard transaction, so an entry
commits exactly when its change does. Leaf indices are assigned later by the log's integrator
(``audit.log``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.events import Actor, LogSite, make_leaf
from shards.registry import Shard
from shards.schema import audit_entries


def site_of(shard: Shard) -> LogSite:
    return LogSite(shard.name, shard.region.name, shard.region.country)


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
    leaf = make_leaf(
        site_of(shard), event, actor, subject=subject, jurisdiction=jurisdiction, **fields
    )
    await conn.execute(insert(audit_entries).values(leaf=leaf, subject=subject))


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
    leaf = make_leaf(
        site_of(shard),
        event,
        actor,
        subject=subject,
        jurisdiction=jurisdiction,
        version=0,
        **fields,
    )
    # The key occurs once: inside a JSON string a quote is escaped, so '"version":' is the key.
    head, marker, tail = leaf.partition(b'"version":0')
    assert marker, "the leaf has no version"
    return head + b'"version":', tail
