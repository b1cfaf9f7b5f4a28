"""The residency guard's jurisdiction list on PostgreSQL: the triggers' WHEN filter follows
the policy, and the shard refuses rows outside it whichever way they arrive."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domicile.shards.engines import create_engine
from domicile.shards.guard import sync_guard
from domicile.shards.schema_runner import SHARD_HISTORY, migrate
from tests.support.deployment import create_databases, drop_databases, pg_url

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

STAMP = "'2026-01-01T00:00:00+00:00'"
SUBJECT = (
    "INSERT INTO subjects (pseudonym, subject_id, jurisdiction, state, placement_version,"
    f" created_at, updated_at) VALUES ($1, 'x', $2, 'home', 1, {STAMP}, {STAMP})"
)
RECORD = (
    "INSERT INTO records (pseudonym, collection, key, data, version, jurisdiction,"
    f" content_sha256, created_at, updated_at) VALUES ($1, 'c', 'k', '{{}}', 1, $2, 'h', {STAMP},"
    f" {STAMP})"
)


@pytest.fixture
async def shard() -> AsyncIterator[tuple[AsyncEngine, asyncpg.Connection]]:
    name = f"dom_guard_{uuid.uuid4().hex[:8]}"
    await create_databases([name])
    engine = create_engine(pg_url(name))
    direct = await asyncpg.connect(pg_url(name, "postgresql"))
    try:
        await migrate(engine, SHARD_HISTORY, "upgrade", "head")
        yield engine, direct
    finally:
        await direct.close()
        await engine.dispose()
        await drop_databases([name])


async def _sync(engine: AsyncEngine, codes: set[str]) -> None:
    async with engine.begin() as conn:
        await sync_guard(conn, frozenset(codes))


async def _trigger_oids(direct: asyncpg.Connection) -> list[int]:
    rows = await direct.fetch(
        "SELECT oid FROM pg_trigger WHERE tgname LIKE '%_residency_guard' ORDER BY tgname"
    )
    return [row["oid"] for row in rows]


async def test_the_filter_follows_the_policy(
    shard: tuple[AsyncEngine, asyncpg.Connection],
) -> None:
    engine, direct = shard
    await _sync(engine, {"DE", "FR"})
    definition = await direct.fetchval(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'records_residency_guard'"
    )
    assert "WHEN" in definition
    assert "{DE,FR}" in definition
    await direct.execute(SUBJECT, "a" * 64, "DE")
    await direct.execute(RECORD, "a" * 64, "DE")
    for statement in (SUBJECT, RECORD):
        with pytest.raises(asyncpg.CheckViolationError, match="residency guard"):
            await direct.execute(statement, "b" * 64, "RU")

    # Unchanged policy: the triggers are left alone (no DDL, no lock, on every start).
    oids = await _trigger_oids(direct)
    await _sync(engine, {"DE", "FR"})
    assert await _trigger_oids(direct) == oids

    # A new law: RU only. RU rows now arrive; a DE record already here can no longer change,
    # while its subject can still be fenced, moved out and purged.
    await _sync(engine, {"RU"})
    assert await _trigger_oids(direct) != oids
    await direct.execute(SUBJECT, "b" * 64, "RU")
    await direct.execute(RECORD, "b" * 64, "RU")
    with pytest.raises(asyncpg.CheckViolationError, match="residency guard"):
        await direct.execute("UPDATE records SET data = '{\"n\":1}' WHERE jurisdiction = 'DE'")
    await direct.execute("UPDATE subjects SET state = 'moving_out' WHERE jurisdiction = 'DE'")
    await direct.execute("DELETE FROM records WHERE jurisdiction = 'DE'")


async def test_an_empty_policy_admits_nothing(
    shard: tuple[AsyncEngine, asyncpg.Connection],
) -> None:
    engine, direct = shard
    await _sync(engine, set())
    with pytest.raises(asyncpg.CheckViolationError, match="residency guard"):
        await direct.execute(SUBJECT, "c" * 64, "DE")


async def test_codes_that_are_not_iso_are_refused(
    shard: tuple[AsyncEngine, asyncpg.Connection],
) -> None:
    engine, _ = shard
    with pytest.raises(ValueError, match="ISO 3166-1"):
        await _sync(engine, {"DE", "x'); DROP TABLE records; --"})
