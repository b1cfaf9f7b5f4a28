"""Moving many records in one statement, inside the caller's shard transaction.

Moves read, copy and compare thousands of records per batch. On PostgreSQL they go through the
transaction's own asyncpg connection: ``COPY`` to write (the residency guard triggers still fire
on every row) and plain fetches to read, which cost a fraction of the client CPU of SQLAlchemy
rows. SQLite takes the portable path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from shards.engines import GUARD_MARKER
from shards.errors import DomicileError, ResidencyGuardViolation
from shards.schema import records

#: Every column of ``records``, in the order rows are passed around here.
COLUMNS: tuple[str, ...] = tuple(c.name for c in records.columns)

# The column list is the schema's own, never input.
_READ_PG = f"SELECT {', '.join(COLUMNS)} FROM records WHERE pseudonym = ANY($1::text[])"  # noqa: S608

#: Per subject and (collection, key): version, recorded content digest, digest of the bytes held.
Listing = dict[str, dict[tuple[str, str], tuple[int, str, str]]]


class BulkWriteFailed(DomicileError):
    code = "bulk_write_failed"

    def __init__(self, shard: str, exc: Exception) -> None:
        super().__init__(f"shard {shard} refused the copied rows ({type(exc).__name__})")


async def _driver(conn: AsyncConnection, *, in_transaction: bool) -> Any:
    """The asyncpg connection under ``conn``; ``in_transaction``: inside the transaction
    SQLAlchemy begins lazily, at the first statement it runs (a lone read needs none)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if in_transaction and not raw.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return raw


async def read_records(conn: AsyncConnection, pseudonyms: Iterable[str]) -> list[Sequence[Any]]:
    """Every record of ``pseudonyms``, as rows in ``COLUMNS`` order, in the caller's snapshot."""
    wanted = list(pseudonyms)
    if conn.dialect.name == "postgresql":
        raw = await _driver(conn, in_transaction=True)
        rows: list[Sequence[Any]] = await raw.fetch(_READ_PG, wanted)
        return rows
    result = await conn.execute(select(records).where(records.c.pseudonym.in_(wanted)))
    return [tuple(r) for r in result]


async def write_records(conn: AsyncConnection, shard: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (in ``COLUMNS`` order) as they are."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(records), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
        return
    raw = await _driver(conn, in_transaction=True)
    try:
        await raw.copy_records_to_table("records", records=rows, columns=COLUMNS)
    except asyncpg.PostgresError as exc:
        if GUARD_MARKER in str(exc):
            raise ResidencyGuardViolation(shard) from exc
        raise BulkWriteFailed(shard, exc) from exc


async def listing(conn: AsyncConnection, pseudonyms: Iterable[str]) -> Listing:
    """What a shard holds of ``pseudonyms``, for comparison with another shard. PostgreSQL
    hashes the stored bytes in place, so contents need not leave the database."""
    wanted = list(pseudonyms)
    found: Listing = {}
    if conn.dialect.name == "postgresql":
        raw = await _driver(conn, in_transaction=False)
        sql = (
            "SELECT pseudonym, collection, key, version, content_sha256,"
            " encode(sha256(convert_to(data, 'UTF8')), 'hex')"
            " FROM records WHERE pseudonym = ANY($1::text[])"
        )
        for p, collection, key, version, label, held in await raw.fetch(sql, wanted):
            found.setdefault(p, {})[(collection, key)] = (version, label, held)
        return found
    stmt = select(
        records.c.pseudonym,
        records.c.collection,
        records.c.key,
        records.c.version,
        records.c.content_sha256,
        records.c.data,
    ).where(records.c.pseudonym.in_(wanted))
    for p, collection, key, version, label, data in await conn.execute(stmt):
        held = hashlib.sha256(data.encode()).hexdigest()
        found.setdefault(p, {})[(collection, key)] = (version, label, held)
    return found
