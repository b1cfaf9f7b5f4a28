"""The raw statement pool of a PostgreSQL engine: prepared statements per connection, which
survive an online schema change, and driver failures translated into domain errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domicile.shards.engines import create_engine, statement_pool
from domicile.shards.errors import ShardUnavailable
from domicile.shards.faults import Fault
from tests.support.deployment import create_databases, drop_databases, pg_url

pytestmark = pytest.mark.anyio


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name = f"dom_pool_{uuid.uuid4().hex[:8]}"
    await create_databases([name])
    try:
        yield name
    finally:
        await drop_databases([name])


async def test_a_prepared_statement_survives_a_schema_change(database: str) -> None:
    admin = await asyncpg.connect(pg_url(database, "postgresql"))
    engine = create_engine(pg_url(database))
    try:
        await admin.execute("CREATE TABLE t (k text PRIMARY KEY, v integer)")
        await admin.execute("INSERT INTO t VALUES ('a', 1)")
        pool = statement_pool(engine)
        assert pool is not None

        async def read() -> object:
            row = await pool.fetchrow("SELECT v FROM t WHERE k = $1", "a", unavailable=unavailable)
            assert row is not None
            return row["v"]

        assert await read() == 1
        # The statement's result type changes under it, as an online migration may do.
        await admin.execute("ALTER TABLE t ALTER COLUMN v TYPE text")
        assert await read() == "1"
    finally:
        await admin.close()
        await engine.dispose()


async def test_an_unreachable_database_is_a_shard_unavailable_error() -> None:
    engine = create_engine(pg_url(f"dom_missing_{uuid.uuid4().hex[:8]}", port=1))
    pool = statement_pool(engine)
    assert pool is not None
    try:
        with pytest.raises(ShardUnavailable):
            await pool.fetchrow("SELECT 1", unavailable=unavailable)
    finally:
        await engine.dispose()


def unavailable(fault: Fault) -> ShardUnavailable:
    return ShardUnavailable("pool-test", fault)
