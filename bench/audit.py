"""Audit log benchmarks (not timed tests): append rate, integration rate, inclusion proof latency
at a large tree, verification rate.

    python -m bench.audit                       # SQLite in a temporary folder, 1M entries
    python -m bench.audit --backend postgres    # a throw-away database on 127.0.0.1:5432
    python -m bench.audit --size 100000         # quicker

Goals (issues 3 and 5, W6): append >= 10k entries/s, inclusion proof < 5 ms at 1M entries,
verification >= 100k leaves/s.

Appends are measured on the paths production uses, each entry with its own subject pseudonym
(so every index of the log is written), each transaction committed durably:

- one entry per transaction, ``--writers`` concurrently: on PostgreSQL one statement through
  the shard's statement pool, the entry insert of a record write's single statement
  (``shards.store``) without the record; on SQLite ``append_entry`` in a write transaction;
- ``append_entries``, ``--batch`` entries per transaction: a move's or bulk change's entries;
- ``append_entry`` through SQLAlchemy, one transaction each, ``--writers`` concurrently: the
  other events (registration, deletion, erasure, schema change).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import text

from domicile.audit.events import RECORD_PUT, Actor, LogSite, make_leaf
from domicile.audit.note import Signer
from domicile.audit.sources import DatabaseSource
from domicile.audit.store import issue_checkpoint
from domicile.audit.verify import verify_log
from domicile.shards.auditlog import Change, append_entries, append_entry, site_of
from domicile.shards.engines import create_engine, statement_pool
from domicile.shards.log_store import ShardLogStore
from domicile.shards.policy import Region, ShardSpec
from domicile.shards.registry import Shard
from domicile.shards.schema_runner import SHARD_HISTORY, migrate

REGION = Region("eu-fra", "DE")
SITE = LogSite("bench-1", "eu-fra", "DE")
ACTOR = Actor(key_id="0123456789abcdef", request_id="0" * 32)
ORIGIN_KEY = "domicile/bench"


# The entry half of ``shards.store``'s one-statement put.
APPEND_ONE_PG = "INSERT INTO audit_pending (leaf, subject) VALUES ($1, $2)"
FLOOR_PG = "INSERT INTO bench_floor VALUES ($1)"


def change(n: int) -> Change:
    return Change(
        RECORD_PUT,
        subject=secrets.token_hex(32),
        jurisdiction="DE",
        fields={
            "record": secrets.token_hex(32),
            "content_sha256": secrets.token_hex(32),
            "version": n,
        },
    )


def leaf(shard: Shard, one: Change) -> bytes:
    return make_leaf(
        site_of(shard),
        one.event,
        ACTOR,
        subject=one.subject,
        jurisdiction=one.jurisdiction,
        **one.fields,
    )


@asynccontextmanager
async def bench_shard(backend: str, pg_admin: str) -> AsyncIterator[Shard]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="domicile-bench-") as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite'}"
            shard = Shard(ShardSpec("bench-1", REGION.name, url), REGION, create_engine(url))
            try:
                yield shard
            finally:
                await shard.engine.dispose()
        return
    name = f"dom_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://{pg_admin.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    shard = Shard(ShardSpec("bench-1", REGION.name, url), REGION, create_engine(url))
    try:
        yield shard
    finally:
        await shard.engine.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({count:,} in {seconds:.2f} s)"


async def concurrently(writers: int, count: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Seconds for ``writers`` tasks to run ``one(n)`` for every n below ``count`` between them."""

    async def writer(w: int) -> None:
        for n in range(w, count, writers):
            await one(n)

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return time.perf_counter() - started


async def bench_append(shard: Shard, count: int, writers: int, batch: int) -> None:
    changes = [change(n) for n in range(count)]
    pool = statement_pool(shard.engine)

    async def statement(n: int) -> None:
        assert pool is not None
        one = changes[n]
        await pool.fetchrow(
            APPEND_ONE_PG,
            leaf(shard, one),
            one.subject,
            unavailable=shard.unavailable,
        )

    async def transaction(n: int) -> None:
        one = changes[n]
        async with shard.write() as conn:
            await append_entry(
                conn,
                shard,
                one.event,
                ACTOR,
                subject=one.subject,
                jurisdiction=one.jurisdiction,
                **one.fields,
            )

    path = "one statement through the statement pool" if pool else "append_entry"
    elapsed = await concurrently(writers, count, statement if pool else transaction)
    print(f"append, 1 entry per transaction, {writers} writers, {path}: {rate(count, elapsed)}")
    if pool:  # what the server commits at most, one durable transaction each, log or no log

        async def floor(n: int) -> None:
            assert pool is not None
            await pool.fetchrow(FLOOR_PG, n, unavailable=shard.unavailable)

        async with shard.write() as conn:
            await conn.execute(text("CREATE TABLE bench_floor (n integer)"))
        elapsed = await concurrently(writers, count, floor)
        print(f"floor: 1-row INSERT, table without indexes, same writers: {rate(count, elapsed)}")

    started = time.perf_counter()
    for start in range(0, count, batch):
        async with shard.write() as conn:
            await append_entries(conn, shard, ACTOR, changes[start : start + batch])
    elapsed = time.perf_counter() - started
    print(f"append_entries, {batch} entries per transaction: {rate(count, elapsed)}")

    if pool:  # on SQLite the first figure is this one
        elapsed = await concurrently(writers, count, transaction)
        figure = rate(count, elapsed)
        print(f"append_entry (SQLAlchemy), 1 per transaction, {writers} writers: {figure}")


async def fill(shard: Shard, size: int) -> None:
    started = time.perf_counter()
    batch = 20_000
    for start in range(0, size, batch):
        async with shard.write() as conn:
            await append_entries(
                conn, shard, ACTOR, [change(n) for n in range(start, min(size, start + batch))]
            )
    print(f"bulk load of leaves: {rate(size, time.perf_counter() - started)}")


async def main(
    backend: str, size: int, pg_admin: str, writers: int, appends: int, batch: int
) -> None:
    async with bench_shard(backend, pg_admin) as shard:
        await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
        log = ShardLogStore(shard)
        print(f"backend {backend}, tree of {size:,} entries")
        await bench_append(shard, appends, writers, batch)
        integrated = await log.integrate()
        await fill(shard, size - integrated)
        started = time.perf_counter()
        total = await log.integrate()
        print(f"integration: {rate(total - integrated, time.perf_counter() - started)}")

        samples = []
        for _ in range(2000):
            index = random.randrange(total)
            started = time.perf_counter()
            await log.inclusion_proof(index, total)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        print(
            f"inclusion proof at {total:,}: p50 {statistics.median(samples):.2f} ms, "
            f"p99 {samples[int(len(samples) * 0.99)]:.2f} ms"
        )
        started = time.perf_counter()
        await log.consistency_proof(total // 3, total)
        print(f"consistency proof: {(time.perf_counter() - started) * 1000:.2f} ms")

        signer = Signer.generate(ORIGIN_KEY)
        await issue_checkpoint(log, total, f"{ORIGIN_KEY}/bench-1", signer)
        source = DatabaseSource({"bench-1": log}, "bench")
        started = time.perf_counter()
        result = await verify_log(source, "bench-1", signer.verifier())
        print(f"verification: {rate(result.size, time.perf_counter() - started)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the tree")
    parser.add_argument("--appends", type=int, default=20_000, help="entries for the append test")
    parser.add_argument("--writers", type=int, default=16, help="concurrent appending writers")
    parser.add_argument("--batch", type=int, default=1000, help="entries per append_entries")
    parser.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the throw-away database on",
    )
    args = parser.parse_args()
    asyncio.run(
        main(args.backend, args.size, args.pg_admin, args.writers, args.appends, args.batch)
    )
