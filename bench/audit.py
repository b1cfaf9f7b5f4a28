"""Audit log benchmarks (not timed tests): append rate, integration rate, inclusion proof latency
at a large tree, verification rate.

    python -m bench.audit                       # SQLite in a temporary folder, 1M entries
    python -m bench.audit --backend postgres    # a throw-away database on 127.0.0.1:5432
    python -m bench.audit --size 100000         # quicker

Goals (issue 3): append >= 10k entries/s, inclusion proof < 5 ms at 1M entries, verification
>= 100k leaves/s.
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import insert

from audit.events import RECORD_PUT, Actor, LogSite, make_leaf
from audit.log import ShardLog
from audit.note import Signer
from audit.sources import DatabaseSource
from audit.verify import verify_log
from shards.auditlog import append_entry
from shards.engines import create_engine
from shards.policy import Region, ShardSpec
from shards.registry import Shard
from shards.schema import audit_entries
from shards.schema_runner import SHARD_HISTORY, migrate

REGION = Region("eu-fra", "DE")
SITE = LogSite("bench-1", "eu-fra", "DE")
ACTOR = Actor(key_id="0123456789abcdef", request_id="0" * 32)
ORIGIN_KEY = "domicile/bench"


def leaf(n: int) -> bytes:
    return make_leaf(
        SITE,
        RECORD_PUT,
        ACTOR,
        subject=secrets.token_hex(32),
        jurisdiction="DE",
        record=secrets.token_hex(32),
        content_sha256=secrets.token_hex(32),
        version=n,
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


async def bench_append(shard: Shard, count: int, writers: int) -> None:
    """One entry per transaction (as a record write appends it), ``writers`` concurrently."""
    leaves = [leaf(n) for n in range(count)]

    async def writer(part: list[bytes]) -> None:
        for one in part:
            async with shard.write() as conn:
                await conn.execute(insert(audit_entries).values(leaf=one, subject=None))

    started = time.perf_counter()
    await asyncio.gather(*(writer(leaves[w::writers]) for w in range(writers)))
    elapsed = time.perf_counter() - started
    print(f"append, 1 entry per transaction, {writers} writers: {rate(count, elapsed)}")

    async with shard.write() as conn:  # the append path proper, batched as a bulk import
        started = time.perf_counter()
        for _ in range(count):
            await append_entry(conn, shard, RECORD_PUT, ACTOR, subject=None, jurisdiction="DE")
    print(f"append_entry in one transaction: {rate(count, time.perf_counter() - started)}")


async def fill(shard: Shard, size: int) -> None:
    started = time.perf_counter()
    batch = 20_000
    for start in range(0, size, batch):
        rows = [{"leaf": leaf(n), "subject": None} for n in range(start, min(size, start + batch))]
        async with shard.write() as conn:
            await conn.execute(insert(audit_entries), rows)
    print(f"bulk load of leaves: {rate(size, time.perf_counter() - started)}")


async def main(backend: str, size: int, pg_admin: str, writers: int, appends: int) -> None:
    async with bench_shard(backend, pg_admin) as shard:
        await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
        log = ShardLog(shard)
        print(f"backend {backend}, tree of {size:,} entries")
        await bench_append(shard, appends, writers)
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
        await log.issue(total, f"{ORIGIN_KEY}/bench-1", signer)
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
    parser.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the throw-away database on",
    )
    args = parser.parse_args()
    asyncio.run(main(args.backend, args.size, args.pg_admin, args.writers, args.appends))
