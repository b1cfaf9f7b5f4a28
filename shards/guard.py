"""The residency guard's jurisdiction list, kept in step with the policy.

Every shard refuses, in the database itself, a subject or record row whose jurisdiction its
``shard_jurisdictions`` table does not list (triggers created by the first shard migration).
On PostgreSQL the trigger function looks the row's jurisdiction up in that table, an SPI query
that cost about 70 us of a put's 290 us of PostgreSQL CPU (an upsert fires it twice). So the
triggers get a ``WHEN`` clause holding the same list as a constant: a permitted row never calls
the function, and any other row still meets the table lookup, which stays the authority. The
clause is rewritten here, in the transaction that rewrites the table, and the list it holds is
recorded as the trigger's comment, so an up-to-date shard is recognised without parsing
trigger definitions. SQLite's guard triggers are ``WHEN`` clauses over the table already.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.shards.policy import is_jurisdiction
from domicile.shards.schema import shard_jurisdictions

# As the first shard migration creates them: subjects are checked when they arrive or change
# jurisdiction (one already here when the policy changes may still be fenced, moved out and
# purged); records on every insert and update.
_TRIGGERS = {
    "subjects": "INSERT OR UPDATE OF jurisdiction",
    "records": "INSERT OR UPDATE",
}
_COMMENT = "domicile residency guard, permitted: {}"


async def sync_guard(conn: AsyncConnection, jurisdictions: frozenset[str]) -> None:
    """Make the shard's guard admit exactly ``jurisdictions``, inside the caller's transaction."""
    # ISO 3166-1 alpha-2 codes are two capital letters: on PostgreSQL they are written into the
    # triggers' DDL as they are, so check them once more.
    if not all(is_jurisdiction(code) for code in jurisdictions):
        raise ValueError(f"not ISO 3166-1 alpha-2 codes: {sorted(jurisdictions)}")
    present = set((await conn.execute(select(shard_jurisdictions.c.code))).scalars())
    if present != jurisdictions:
        await conn.execute(delete(shard_jurisdictions))
        rows: list[dict[str, Any]] = [{"code": code} for code in sorted(jurisdictions)]
        if rows:
            await conn.execute(insert(shard_jurisdictions), rows)
    if conn.dialect.name == "postgresql":
        await _sync_trigger_filters(conn, jurisdictions)


async def _sync_trigger_filters(conn: AsyncConnection, jurisdictions: frozenset[str]) -> None:
    codes = ",".join(sorted(jurisdictions))
    comment = _COMMENT.format(codes or "none")
    rows = await conn.execute(
        text(
            "SELECT c.relname, obj_description(t.oid, 'pg_trigger') FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgname = c.relname || '_residency_guard'"
        )
    )
    current: dict[str, str | None] = {table: note for table, note in rows}
    for table, events in _TRIGGERS.items():
        if current.get(table) == comment:
            continue
        name = f"{table}_residency_guard"
        await conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
        await conn.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE {events} ON {table} FOR EACH ROW"
                f" WHEN (NEW.jurisdiction <> ALL ('{{{codes}}}'::text[]))"
                " EXECUTE FUNCTION domicile_residency_guard()"
            )
        )
        await conn.execute(text(f"COMMENT ON TRIGGER {name} ON {table} IS '{comment}'"))
