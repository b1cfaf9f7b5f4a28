"""A subject's lookup keys on its home shard, inside the caller's shard transaction: written
with their ``lookup.set`` / ``lookup.removed`` audit entries (kind and blind value, never the
value), read for export, settling claims and moves.

These are the shard half of setting a lookup key; the catalog half (claim, activate, release)
is ``shards.lookup_index``. A bulk loader sets many subjects' keys by claiming them
(``RecordStore.claim_lookups``), calling ``write_lookups`` per subject in its shard
transactions, and activating them (``RecordStore.activate_lookups``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit import events
from domicile.audit.events import Actor
from domicile.shards.auditlog import append_entry
from domicile.shards.engines import insert_on_conflict
from domicile.shards.lookup_keys import LookupValue
from domicile.shards.registry import Shard
from domicile.shards.rows import LookupRow
from domicile.shards.schema import lookups


async def write_lookups(
    conn: AsyncConnection,
    shard: Shard,
    actor: Actor,
    pseudonym: str,
    jurisdiction: str,
    values: Sequence[LookupValue],
) -> dict[str, str]:
    """Set the subject's lookup keys to ``values`` (one per kind), each change with its
    ``lookup.set`` entry; a key already set to the same value is left as it is. Returns the
    blind values replaced, by kind (for their release in the catalog)."""
    if not values:
        return {}
    held = {
        kind: (value, blind)
        for kind, value, blind in await conn.execute(
            select(lookups.c.kind, lookups.c.value, lookups.c.blind).where(
                lookups.c.pseudonym == pseudonym,
                lookups.c.kind.in_([v.kind for v in values]),
            )
        )
    }
    now = datetime.now(UTC)
    replaced: dict[str, str] = {}
    for v in values:
        before = held.get(v.kind)
        if before == (v.value, v.blind):
            continue
        stmt = insert_on_conflict(conn, lookups).values(
            pseudonym=pseudonym,
            kind=v.kind,
            value=v.value,
            normalized=v.normalized,
            blind=v.blind,
            created_at=now,
            updated_at=now,
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[lookups.c.pseudonym, lookups.c.kind],
                set_={
                    "value": v.value,
                    "normalized": v.normalized,
                    "blind": v.blind,
                    "updated_at": now,
                },
            )
        )
        if before is not None and before[1] != v.blind:
            replaced[v.kind] = before[1]
        await append_entry(
            conn,
            shard,
            events.LOOKUP_SET,
            actor,
            subject=pseudonym,
            jurisdiction=jurisdiction,
            kind=v.kind,
            blind=v.blind,
        )
    return replaced


async def delete_lookup(
    conn: AsyncConnection,
    shard: Shard,
    actor: Actor,
    pseudonym: str,
    jurisdiction: str,
    kind: str,
    *,
    blind: str | None = None,
) -> str | None:
    """Remove the subject's key of ``kind`` (only if its blind value is ``blind``, when
    given), with its ``lookup.removed`` entry; returns the blind value removed, if any."""
    stmt = delete(lookups).where(lookups.c.pseudonym == pseudonym, lookups.c.kind == kind)
    if blind is not None:
        stmt = stmt.where(lookups.c.blind == blind)
    removed = (await conn.execute(stmt.returning(lookups.c.blind))).scalar_one_or_none()
    if removed is not None:
        await append_entry(
            conn,
            shard,
            events.LOOKUP_REMOVED,
            actor,
            subject=pseudonym,
            jurisdiction=jurisdiction,
            kind=kind,
            blind=removed,
        )
    return removed


async def read_lookups(conn: AsyncConnection, pseudonyms: Sequence[str]) -> list[LookupRow]:
    """Every lookup key of ``pseudonyms``, as whole rows."""
    stmt = select(*(lookups.c[name] for name in LookupRow._fields)).where(
        lookups.c.pseudonym.in_(list(pseudonyms))
    )
    return list(map(LookupRow._make, await conn.execute(stmt)))


async def copy_lookups(
    conn: AsyncConnection, pseudonyms: Sequence[str], rows: Sequence[LookupRow]
) -> None:
    """Make the shard's lookup keys of ``pseudonyms`` exactly ``rows`` (a move's copy)."""
    if not pseudonyms:
        return
    await conn.execute(delete(lookups).where(lookups.c.pseudonym.in_(list(pseudonyms))))
    if rows:
        await conn.execute(insert(lookups), [r._asdict() for r in rows])


async def holds(conn: AsyncConnection, pseudonym: str, kind: str, blind: str) -> bool:
    found = await conn.execute(
        select(lookups.c.kind).where(
            lookups.c.pseudonym == pseudonym, lookups.c.kind == kind, lookups.c.blind == blind
        )
    )
    return found.first() is not None
