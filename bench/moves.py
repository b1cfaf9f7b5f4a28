"""W5: online moves between two PostgreSQL shards, under a read/write load.

    python -m bench.moves [--subjects 5000] [--records 10] [--batch-size 100] [--parallel 2]

Loads subjects of ``--records`` records each onto shard eu-fra-1, then drains it into ru-msk-1
(both permitted for RU, so writes are accepted at the source until each subject's cutover) while
a separate process reads and writes those subjects through its own RecordStore, as a router
would. Prints records moved per second (copy + verify + switch + purge, journal included) and
the per-subject write pause: the mover's fence-to-switch window for every subject, and the
pauses the load actually ran into (first refused write to next accepted one).

Needs the PostgreSQL server of the test suite (``--pg``); creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import asyncpg

from bench.deploy import DIRECTORY_COLUMNS, RECORD_COLUMNS, SUBJECT_COLUMNS
from domicile.audit.events import Actor
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.comply import Selection, comply
from domicile.shards.errors import Unavailable
from domicile.shards.moves import Mover
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, migrate
from domicile.shards.states import PlacementState, SubjectState
from domicile.shards.store import content_digest, encode_data

CONFIG = """\
deployment = "bench"
data_dir = "{data_dir}"

[regions.eu-fra]
country = "DE"

[regions.ru-msk]
country = "RU"

[shards.eu-fra-1]
region = "eu-fra"
url = "{source}"
accepts_new_subjects = {source_accepts}

[shards.ru-msk-1]
region = "ru-msk"
url = "{target}"

[policy.RU]
store_in = ["eu-fra", "ru-msk"]

[policy.default]
store_in = []

[catalog]
url = "{catalog}"
"""


@dataclass(frozen=True)
class Setup:
    config: Path
    subjects: int
    records: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def load_data(setup: Setup, dsn: str, databases: dict[str, str]) -> None:
    """Subjects and records written straight into the source shard and the directory."""
    settings = load_settings(setup.config)
    async with open_runtime(settings, prepare=False) as runtime:
        await migrate(runtime.catalog.engine, CATALOG_HISTORY, "upgrade", "head")
        for shard in runtime.registry.all():
            await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
        pseudonyms: Pseudonymizer = runtime.pseudonyms
    async with open_runtime(settings):  # records identities and residency guards
        pass
    now = datetime.now(UTC)
    subject_rows, record_rows, directory_rows = [], [], []
    for i in range(setup.subjects):
        subject = f"bench-{i}"
        p = pseudonyms.subject(subject)
        subject_rows.append((p, subject, "RU", SubjectState.HOME, 1, now, now))
        directory_rows.append((p, "RU", "eu-fra-1", 1, PlacementState.ACTIVE, now, now))
        for k in range(setup.records):
            stored = encode_data({"n": k, "payload": "x" * 200})
            record_rows.append(
                (p, "c", f"k{k}", stored.decode(), 1, "RU", content_digest(stored), now, now)
            )
    source = await asyncpg.connect(f"{dsn}/{databases['source']}")
    catalog = await asyncpg.connect(f"{dsn}/{databases['catalog']}")
    try:
        await source.copy_records_to_table(
            "subjects",
            records=subject_rows,
            columns=SUBJECT_COLUMNS,
        )
        await source.copy_records_to_table(
            "records",
            records=record_rows,
            columns=RECORD_COLUMNS,
        )
        await catalog.copy_records_to_table(
            "directory",
            records=directory_rows,
            columns=DIRECTORY_COLUMNS,
        )
        await source.execute("ANALYZE")
        await catalog.execute("ANALYZE")
    finally:
        await source.close()
        await catalog.close()


def run_load(setup: Setup, writers: int, stop: Event, results: Any) -> None:
    asyncio.run(_load(setup, writers, stop, results))


async def _load(setup: Setup, writers: int, stop: Event, results: Any) -> None:
    """Readers and writers on random subjects; each refused write opens a pause for its subject
    that the next accepted write closes."""
    actor = Actor(key_id="bench")
    pauses: list[float] = []
    counts = {"reads": 0, "writes": 0, "refused": 0, "errors": 0}
    try:
        await _drive(setup, writers, stop, actor, pauses, counts)
    finally:
        results.put((pauses, counts))


async def _drive(
    setup: Setup,
    writers: int,
    stop: Event,
    actor: Actor,
    pauses: list[float],
    counts: dict[str, int],
) -> None:
    async with open_runtime(load_settings(setup.config)) as runtime:
        store = runtime.store
        refused_since: dict[int, float] = {}

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                i, k = rng.randrange(setup.subjects), rng.randrange(setup.records)
                subject = f"bench-{i}"
                try:
                    if rng.random() < 0.5:
                        await store.get(subject, "c", f"k{k}")
                        counts["reads"] += 1
                        continue
                    await store.put(subject, "c", f"k{k}", {"n": k, "at": time.time()}, actor)
                    counts["writes"] += 1
                    started = refused_since.pop(i, None)
                    if started is not None:
                        pauses.append(time.monotonic() - started)
                except Unavailable:
                    # A client retrying the same write until it lands: the pause it sees.
                    counts["refused"] += 1
                    refused_since.setdefault(i, time.monotonic())
                    await asyncio.sleep(0.002)
                    while i in refused_since and not stop.is_set():
                        try:
                            await store.put(subject, "c", f"k{k}", {"n": k}, actor)
                        except Unavailable:
                            counts["refused"] += 1
                            await asyncio.sleep(0.002)
                            continue
                        counts["writes"] += 1
                        # Another task's write to the same subject may have closed the pause.
                        started = refused_since.pop(i, None)
                        if started is not None:
                            pauses.append(time.monotonic() - started)
                except Exception:
                    counts["errors"] += 1

        await asyncio.gather(*(worker(n) for n in range(writers)))


async def move_all(setup: Setup, parallel: int, batch_size: int) -> tuple[float, float, Any]:
    """Drain the source; returns wall seconds, the mover's CPU seconds and comply's report."""
    async with open_runtime(load_settings(setup.config)) as runtime:
        mover = Mover(
            runtime.settings.topology,
            runtime.registry,
            runtime.directory,
            runtime.move_journal,
            runtime.pseudonyms,
            actor=Actor(key_id="bench", purpose="bench"),
        )
        started, cpu = time.monotonic(), time.process_time()
        report = await comply(
            mover, Selection(drain="eu-fra-1"), parallel=parallel, batch_size=batch_size
        )
        return time.monotonic() - started, time.process_time() - cpu, report


async def count(dsn: str, database: str, sql: str) -> int:
    conn = await asyncpg.connect(f"{dsn}/{database}")
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def databases_ctl(dsn: str, names: list[str], create: bool) -> None:
    conn = await asyncpg.connect(f"{dsn}/postgres")
    try:
        for name in names:
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
            else:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--writers", type=int, default=8, help="concurrent load tasks")
    args = parser.parse_args()

    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    databases = {role: f"{prefix}_{role}" for role in ("source", "target", "catalog")}
    dsn = args.pg.rstrip("/")
    driver = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    workdir = Path(tempfile.mkdtemp(prefix="domicile-bench-"))
    config = workdir / "domicile.toml"

    def write_config(source_accepts: bool) -> None:
        config.write_text(
            CONFIG.format(
                data_dir=workdir / "data",
                source=f"{driver}/{databases['source']}",
                target=f"{driver}/{databases['target']}",
                catalog=f"{driver}/{databases['catalog']}",
                source_accepts=str(source_accepts).lower(),
            )
        )

    setup = Setup(config, args.subjects, args.records)
    asyncio.run(databases_ctl(dsn, list(databases.values()), create=True))
    try:
        write_config(source_accepts=True)
        print(f"loading {args.subjects} subjects x {args.records} records onto eu-fra-1 ...")
        asyncio.run(load_data(setup, dsn, databases))
        write_config(source_accepts=False)  # drain eu-fra-1 into ru-msk-1

        spawn = multiprocessing.get_context("spawn")
        stop, results = spawn.Event(), spawn.Queue()
        load = spawn.Process(target=run_load, args=(setup, args.writers, stop, results))
        load.start()
        time.sleep(2.0)  # let the load settle
        elapsed, cpu, report = asyncio.run(move_all(setup, args.parallel, args.batch_size))
        stop.set()
        observed, counts = results.get(timeout=60)
        load.join(timeout=30)

        moved = sum(report.records.values())
        left = asyncio.run(count(dsn, databases["source"], "SELECT count(*) FROM records"))
        landed = asyncio.run(count(dsn, databases["target"], "SELECT count(*) FROM records"))
        pauses = [p * 1000 for p in report.pauses]
        seen = [p * 1000 for p in observed]
        print(f"moved {sum(report.moved.values())} subjects, {moved} records in {elapsed:.2f} s")
        print(f"throughput: {moved / elapsed:,.0f} records/s (copy + verify + switch + purge)")
        # Wall time swings with the machine's other work; the mover's own CPU much less.
        print(f"mover CPU: {cpu / max(moved, 1) * 1e6:.1f} us per record")
        if pauses:
            print(
                f"write pause per subject (mover): p50 {statistics.median(pauses):.1f} ms, "
                f"p99 {percentile(pauses, 0.99):.1f} ms, max {max(pauses):.1f} ms"
            )
        print(
            f"load: {counts['reads']} reads, {counts['writes']} writes, {counts['refused']} "
            f"refused (503, retried), {counts['errors']} errors; pauses met: {len(seen)}"
            + (f", p99 {percentile(seen, 0.99):.1f} ms, max {max(seen):.1f} ms" if seen else "")
        )
        print(f"source records left: {left}; target records: {landed}")
        ok = left == 0 and landed == args.subjects * args.records and counts["errors"] == 0
        ok = ok and report.remaining == 0
        print("OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        asyncio.run(databases_ctl(dsn, list(databases.values()), create=False))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
