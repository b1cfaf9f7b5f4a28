"""Library paths, CPU per operation (``time.process_time`` over sequential operations, so the
figure is this process's own work, server time excluded), in one process on uvloop:

- A: raw asyncpg on the baseline's table, one connection, prepared statements: the point
  SELECT and a single-row INSERT (its own transaction). Also the point SELECT through B's asyncpg
  pool (acquire, fetch, release), which is what a concurrent service pays per read.
- L: ``RecordStore.get`` through the directory cache (an LRU hit) against the PostgreSQL
  shards; ``RecordStore.put`` with its audit entry, for reference.
- W7: ``RecordStore.get`` with 3 shards against 300: (a) L against the same deployment plus 297
  configured shards that are never connected to; (b) 3 against 300 SQLite shard files, every
  one holding subjects. And the CPU to choose a new subject's home among 1 or 100 shards.

    python -m bench.library --config F --baseline-dsn D --hot N --repeats R --json OUT
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench.baseline_app import keep_session
from bench.deploy import COLLECTION, JURISDICTIONS, KEY, hot_id, pg_url, record_body, run
from domicile.audit.events import Actor
from domicile.router.config import load_settings
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.engines import create_engine
from domicile.shards.placement import choose_home
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, migrate

SELECT = "SELECT version, data FROM records WHERE subject_id = $1 AND collection = $2 AND key = $3"
INSERT = (
    "INSERT INTO records (subject_id, collection, key, data, version, updated_at)"
    " VALUES ($1, $2, $3, $4, 1, now())"
)
ACTOR = Actor(key_id="bench")
SQLITE_SUBJECTS = 600

Op = Callable[[int], Awaitable[Any]]


async def cpu_per_op(op: Op, count: int) -> float:
    """Microseconds of this process's CPU per call of ``op``, after a short warm-up."""
    for i in range(count // 10):
        await op(i)
    started = time.process_time()
    for i in range(count):
        await op(i)
    return (time.process_time() - started) / count * 1e6


def idle_shards(count: int) -> str:
    """TOML for ``count`` more shards spread over the three regions, on databases that do not
    exist: configured, in the registry and the topology, never connected to."""
    regions = ("ru-msk", "eu-fra", "us-east")
    return "\n".join(
        f'[shards.idle-{i:03d}]\nregion = "{regions[i % 3]}"\nurl = "{pg_url(f"bench_idle_{i}")}"\n'
        for i in range(count)
    )


@asynccontextmanager
async def sqlite_deployment(root: Path, shards_per_region: int) -> AsyncIterator[Runtime]:
    """A deployment of SQLite shard files (copies of one migrated file) with every shard
    holding subjects; ``SQLITE_SUBJECTS`` subjects with one record each."""
    template = root / "shard-template.sqlite"
    catalog_template = root / "catalog-template.sqlite"
    for path, history in ((template, SHARD_HISTORY), (catalog_template, CATALOG_HISTORY)):
        if not path.exists():
            engine = create_engine(f"sqlite+aiosqlite:///{path}")
            try:
                await migrate(engine, history, "upgrade", "head")
            finally:
                await engine.dispose()
    home = root / f"sqlite-{shards_per_region * 3}"
    (home / "shards").mkdir(parents=True)
    shutil.copyfile(catalog_template, home / "catalog.sqlite")
    parts = [f'data_dir = "{home}"']
    parts += [
        f'[regions.{r}]\ncountry = "{c}"' for r, c in (("ru", "RU"), ("eu", "DE"), ("us", "US"))
    ]
    for region in ("ru", "eu", "us"):
        for i in range(shards_per_region):
            target = home / "shards" / f"{region}-{i}.sqlite"
            shutil.copyfile(template, target)
            parts.append(
                f'[shards.{region}-{i}]\nregion = "{region}"\nurl = "sqlite+aiosqlite:///{target}"'
            )
    parts += [
        '[policy.RU]\nstore_in = ["ru"]',
        '[policy.EU]\nstore_in = ["eu"]',
        '[policy.default]\nstore_in = ["us"]',
        f'[catalog]\nurl = "sqlite+aiosqlite:///{home / "catalog.sqlite"}"',
    ]
    config = home / "domicile.toml"
    config.write_text("\n\n".join(parts) + "\n")
    async with open_runtime(load_settings(config)) as runtime:
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                jurisdiction = JURISDICTIONS[i % len(JURISDICTIONS)]
                await runtime.store.register(hot_id(i), jurisdiction, ACTOR)
                await runtime.store.put(hot_id(i), COLLECTION, KEY, record_body(i), ACTOR)

        await asyncio.gather(*(one(i) for i in range(SQLITE_SUBJECTS)))
        yield runtime


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[float]] = {}
    hot, ops = args.hot, args.ops
    async with AsyncExitStack() as stack:
        conn = await asyncpg.connect(args.baseline_dsn)
        stack.push_async_callback(conn.close)
        pool = await asyncpg.create_pool(args.baseline_dsn, reset=keep_session)  # B's pool
        stack.push_async_callback(pool.close)
        select = await conn.prepare(SELECT)
        insert = await conn.prepare(INSERT)
        await conn.execute("DELETE FROM records WHERE collection = 'bench-a'")

        settings = load_settings(args.config)
        runtime = await stack.enter_async_context(open_runtime(settings, prepare=False))
        wide_config = Path(args.workdir) / "domicile-300.toml"
        wide_config.write_text(args.config.read_text() + "\n" + idle_shards(297) + "\n")
        wide = await stack.enter_async_context(
            open_runtime(load_settings(wide_config), prepare=False)
        )
        sqlite_3 = await stack.enter_async_context(sqlite_deployment(Path(args.workdir), 1))
        sqlite_300 = await stack.enter_async_context(sqlite_deployment(Path(args.workdir), 100))
        body = record_body(7)
        inserted = 0

        async def a_insert(i: int) -> None:
            nonlocal inserted
            inserted += 1
            await insert.fetch(hot_id(i % hot), "bench-a", f"k{inserted}", '{"n":1}')

        def get(rt: Runtime, subjects: int) -> Op:
            return lambda i: rt.store.get(hot_id(i % subjects), COLLECTION, KEY)

        # Compared measures sit next to each other, writes last (their WAL and vacuum work
        # lingers), and every other round runs the list backwards, so neither of a pair always
        # goes first.
        measures: dict[str, tuple[Op, int]] = {
            "A_select": (lambda i: select.fetchrow(hot_id(i % hot), COLLECTION, KEY), ops),
            "L_get": (get(runtime, hot), ops),
            "W7_pg_300": (get(wide, hot), ops),
            "A_select_pool": (
                lambda i: pool.fetchrow(SELECT, hot_id(i % hot), COLLECTION, KEY),
                ops,
            ),
            "W7_sqlite_3": (get(sqlite_3, SQLITE_SUBJECTS), ops // 10),
            "W7_sqlite_300": (get(sqlite_300, SQLITE_SUBJECTS), ops // 10),
            "A_insert": (a_insert, ops // 10),
            "L_put": (
                lambda i: runtime.store.put(hot_id(i % hot), COLLECTION, "lib", body, ACTOR),
                ops // 10,
            ),
        }
        # Fill every directory cache, then keep start-up objects out of the collector's scans,
        # as the servers do; the same for every measure.
        for op, _ in measures.values():
            for i in range(max(hot, SQLITE_SUBJECTS)):
                await op(i)
        gc.collect()
        gc.freeze()
        reads = [name for name in measures if name not in ("A_insert", "L_put")]
        for round_ in range(args.repeats):
            order = reads if round_ % 2 == 0 else reads[::-1]
            for name in [*order, "A_insert", "L_put"]:
                op, count = measures[name]
                results.setdefault(name, []).append(await cpu_per_op(op, count))
        placement = {
            str(len(rt.settings.topology.shards)): statistics.median(
                [placement_cost(rt, 2000) for _ in range(args.repeats)]
            )
            for rt in (sqlite_3, sqlite_300)
        }
    return {"cpu_us": results, "placement_us": placement}


def placement_cost(runtime: Runtime, count: int) -> float:
    """CPU per choice of a new subject's home shard (rendezvous hashing over the candidates)."""
    topology = runtime.settings.topology
    pseudonyms = [runtime.pseudonyms.subject(f"new-{i}") for i in range(count)]
    started = time.process_time()
    for pseudonym in pseudonyms:
        choose_home(topology, "US", pseudonym)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--baseline-dsn", required=True)
    parser.add_argument("--hot", type=int, required=True)
    parser.add_argument("--ops", type=int, default=10_000, help="operations per measure")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="domicile-bench-lib-") as workdir:
        args.workdir = workdir
        args.json.write_text(json.dumps(run(measure(args))))


if __name__ == "__main__":
    main()
