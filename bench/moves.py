"""W5: online moves between two PostgreSQL shards, against the machine's copy limit and under
a read/write load.

    python -m bench.moves [--subjects 5000] [--records 10] [--batch-size 1000] [--parallel 2]

Loads subjects of ``--records`` records each onto shard eu-fra-1 (both shards are permitted for
RU, so writes are accepted at the source until each subject's cutover). Then, in one run:

1. the copy limit: a raw ``COPY (SELECT ...) TO STDOUT | COPY ... FROM STDIN`` pipe (two
   ``psql``, binary format) of the same records from eu-fra-1's database into a table of the
   records table's shape, primary key included, in ru-msk-1's database;
2. ``comply`` draining eu-fra-1 into ru-msk-1 with nothing else running: records/s and its
   ratio to the pipe;
3. ``comply`` draining them back while a separate process runs the W3 mix (nine reads to one
   write) on those subjects through its own RecordStore, as a router would. Prints records
   moved per second (copy + verify + switch + purge, journal included) and the per-subject
   write pause: the mover's fence-to-switch window for every subject, and the pauses the load
   actually ran into (first refused write to next accepted one); then checks that every
   acknowledged write is at the subject's new home.

Needs the PostgreSQL server of the test suite (``--pg``); creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.deploy import DIRECTORY_COLUMNS, RECORD_COLUMNS, SUBJECT_COLUMNS
from domicile.audit.events import Actor
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.comply import Report, Selection, comply
from domicile.shards.errors import DomicileError, Unavailable
from domicile.shards.moves import CUTOVER, Mover
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, migrate
from domicile.shards.states import PlacementState, SubjectState
from domicile.shards.store import RecordStore, content_digest, encode_data

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
accepts_new_subjects = {target_accepts}

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


#: The W3 mix: nine reads to one write.
READ_SHARE = 0.9


@dataclass
class LoadResult:
    """What the load met: the pauses (seconds) its writes waited through, its counts, and the
    last version it had acknowledged of each record written, with the payload's mark."""

    pauses: list[float]
    counts: dict[str, int]
    acknowledged: dict[tuple[str, str], tuple[int, str]]
    #: Writes refused, by the error's class.
    refusals: Counter[str] = field(default_factory=Counter)


def start_load(
    config: Path, subjects: list[str], records: int, writers: int
) -> Callable[[], LoadResult]:
    """``run_load`` in a process of its own, running once this returns; the function returned
    stops it and gives what the load met."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
    load = spawn.Process(
        target=run_load, args=(config, subjects, records, writers, ready, stop, results)
    )
    load.start()
    ready.wait(timeout=120)
    time.sleep(2.0)  # the router is up and writing (relocating what it writes to, on new rules)

    def finish() -> LoadResult:
        stop.set()
        met: LoadResult = results.get(timeout=120)
        load.join(timeout=30)
        return met

    return finish


def run_load(
    config: Path,
    subjects: list[str],
    records: int,
    writers: int,
    ready: Event,
    stop: Event,
    results: Any,
) -> None:
    asyncio.run(_load(config, subjects, records, writers, ready, stop, results))


async def _load(
    config: Path,
    subjects: list[str],
    records: int,
    writers: int,
    ready: Event,
    stop: Event,
    results: Any,
) -> None:
    """Readers and writers on random subjects; each refused write opens a pause for its subject
    that the next accepted write closes. A write that relocates its subject first (a router
    with a rule in effect that no longer permits its home) waits through the move: that wait
    is a pause too."""
    actor = Actor(key_id="bench")
    result = LoadResult([], {"reads": 0, "writes": 0, "retried": 0, "refused": 0, "errors": 0}, {})
    try:
        async with open_runtime(load_settings(config)) as runtime:
            if runtime.store.relocator is not None:
                runtime.store.relocator.observe = result.pauses.append
            ready.set()
            await _drive(runtime.store, subjects, records, writers, stop, actor, result)
    finally:
        results.put(result)


async def _drive(
    store: RecordStore,
    subjects: list[str],
    records: int,
    writers: int,
    stop: Event,
    actor: Actor,
    result: LoadResult,
) -> None:
    counts = result.counts
    refused_since: dict[str, float] = {}
    marks = itertools.count()

    async def write(subject: str, key: str) -> None:
        mark = f"{os.getpid()}-{next(marks)}"
        stored = await store.put(subject, "c", key, {"key": key, "mark": mark}, actor)
        counts["writes"] += 1
        known = result.acknowledged.get((subject, key))
        if known is None or known[0] < stored.version:
            result.acknowledged[(subject, key)] = (stored.version, mark)
        started = refused_since.pop(subject, None)
        if started is not None:
            # Another task's write to the same subject may have closed the pause.
            result.pauses.append(time.monotonic() - started)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            subject, key = rng.choice(subjects), f"k{rng.randrange(records)}"
            try:
                if rng.random() < READ_SHARE:
                    await store.get(subject, "c", key)
                    counts["reads"] += 1
                    continue
                await write(subject, key)
            except Unavailable:
                # A client retrying the same write until it lands: the pause it sees.
                counts["retried"] += 1
                refused_since.setdefault(subject, time.monotonic())
                while subject in refused_since and not stop.is_set():
                    await asyncio.sleep(0.002)
                    try:
                        await write(subject, key)
                    except Unavailable:
                        counts["retried"] += 1
            except DomicileError as exc:  # not retryable: the client shows an error
                counts["refused"] += 1
                result.refusals[type(exc).__name__] += 1
            except Exception:
                counts["errors"] += 1

    await asyncio.gather(*(worker(n) for n in range(writers)))


async def lost_writes(config: Path, acknowledged: dict[tuple[str, str], tuple[int, str]]) -> int:
    """Acknowledged writes not found at the subject's home: a later version may have replaced
    one (a write in flight when the load stopped), an older one or another mark may not."""
    lost = 0
    async with open_runtime(load_settings(config)) as runtime:
        for (subject, key), (version, mark) in acknowledged.items():
            stored = await runtime.store.get(subject, "c", key)
            held = orjson.loads(stored.data or b"{}")
            if stored.version < version or (stored.version == version and held["mark"] != mark):
                lost += 1
    return lost


async def move_all(
    config: Path, selection: Selection, parallel: int, batch_size: int, cutover_size: int
) -> tuple[float, float, Report]:
    """Move the subjects ``selection`` finds misplaced; returns wall seconds, the mover's CPU
    seconds and comply's report."""
    async with open_runtime(load_settings(config)) as runtime:
        mover = Mover(
            runtime.settings.topology,
            runtime.registry,
            runtime.directory,
            runtime.move_journal,
            runtime.pseudonyms,
            actor=Actor(key_id="bench", purpose="bench"),
            cutover_size=cutover_size,
        )
        started, cpu = time.monotonic(), time.process_time()
        report = await comply(mover, selection, parallel=parallel, batch_size=batch_size)
        return time.monotonic() - started, time.process_time() - cpu, report


def copy_limit(source_dsn: str, target_dsn: str, select: str) -> tuple[int, float]:
    """The machine's copy limit between two databases: ``select``'s rows piped by ``COPY ... TO
    STDOUT | COPY ... FROM STDIN`` (two ``psql``, binary) into a table of the records table's
    shape with its primary key, dropped afterwards. Returns (rows, seconds)."""
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    table = "copy_limit"
    setup = f"CREATE TABLE {table} (LIKE records INCLUDING DEFAULTS INCLUDING INDEXES)"
    subprocess.run([*psql, target_dsn, "-c", setup], check=True)
    try:
        started = time.monotonic()
        out = subprocess.Popen(
            [*psql, source_dsn, "-c", f"COPY ({select}) TO STDOUT (FORMAT binary)"],
            stdout=subprocess.PIPE,
        )
        into = subprocess.run(
            [*psql, target_dsn, "-c", f"COPY {table} FROM STDIN (FORMAT binary)"],
            stdin=out.stdout,
            check=False,
        )
        if out.wait() != 0 or into.returncode != 0:
            raise RuntimeError("the raw COPY pipe failed")
        elapsed = time.monotonic() - started
        rows = subprocess.run(
            [*psql, "-tA", target_dsn, "-c", f"SELECT count(*) FROM {table}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return int(rows), elapsed
    finally:
        subprocess.run([*psql, target_dsn, "-c", f"DROP TABLE {table}"], check=True)


async def count(dsn: str, database: str, sql: str) -> int:
    conn = await asyncpg.connect(f"{dsn}/{database}")
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def vacuum(dsn: str, databases: list[str]) -> None:
    """A fair start for the next phase: no dead rows or stale statistics from the last."""
    for database in databases:
        conn = await asyncpg.connect(f"{dsn}/{database}")
        try:
            await conn.execute("VACUUM ANALYZE")
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


def pause_line(label: str, seconds: list[float]) -> str:
    ms = [p * 1000 for p in seconds]
    if not ms:
        return f"{label}: none"
    return (
        f"{label}: p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000, help="subjects copied together")
    parser.add_argument("--cutover-size", type=int, default=CUTOVER, help="subjects per pause")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--writers", type=int, default=8, help="concurrent load tasks")
    args = parser.parse_args()

    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    databases = {role: f"{prefix}_{role}" for role in ("source", "target", "catalog")}
    dsn = args.pg.rstrip("/")
    driver = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    workdir = Path(tempfile.mkdtemp(prefix="domicile-bench-"))
    config = workdir / "domicile.toml"

    def write_config(source_accepts: bool, target_accepts: bool = True) -> None:
        config.write_text(
            CONFIG.format(
                data_dir=workdir / "data",
                source=f"{driver}/{databases['source']}",
                target=f"{driver}/{databases['target']}",
                catalog=f"{driver}/{databases['catalog']}",
                source_accepts=str(source_accepts).lower(),
                target_accepts=str(target_accepts).lower(),
            )
        )

    setup = Setup(config, args.subjects, args.records)
    total = args.subjects * args.records
    moving = (args.parallel, args.batch_size, args.cutover_size)
    asyncio.run(databases_ctl(dsn, list(databases.values()), create=True))
    try:
        write_config(source_accepts=True)
        print(f"loading {args.subjects} subjects x {args.records} records onto eu-fra-1 ...")
        asyncio.run(load_data(setup, dsn, databases))

        rows, piped = copy_limit(
            f"{dsn}/{databases['source']}",
            f"{dsn}/{databases['target']}",
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM records",
        )
        limit = rows / piped
        print(
            f"copy limit (raw COPY pipe, same rows): {limit:,.0f} records/s "
            f"({rows} in {piped:.2f} s)"
        )

        write_config(source_accepts=False)  # drain eu-fra-1 into ru-msk-1, nothing else running
        asyncio.run(vacuum(dsn, list(databases.values())))
        quiet, _, report = asyncio.run(move_all(config, Selection(drain="eu-fra-1"), *moving))
        quiet_rate = sum(report.records.values()) / quiet
        print(
            f"comply alone: {quiet_rate:,.0f} records/s ({sum(report.records.values())} in "
            f"{quiet:.2f} s), {quiet_rate / limit:.2f}x the copy limit; "
            + pause_line("pause", report.pauses)
        )

        write_config(source_accepts=True, target_accepts=False)  # and back, under the load
        asyncio.run(vacuum(dsn, list(databases.values())))
        subjects = [f"bench-{i}" for i in range(args.subjects)]
        finish_load = start_load(config, subjects, args.records, args.writers)
        elapsed, cpu, report = asyncio.run(move_all(config, Selection(drain="ru-msk-1"), *moving))
        met = finish_load()

        moved = sum(report.records.values())
        left = asyncio.run(count(dsn, databases["target"], "SELECT count(*) FROM records"))
        landed = asyncio.run(count(dsn, databases["source"], "SELECT count(*) FROM records"))
        lost = asyncio.run(lost_writes(config, met.acknowledged))
        counts = met.counts
        print(f"moved {sum(report.moved.values())} subjects, {moved} records in {elapsed:.2f} s")
        print(f"throughput: {moved / elapsed:,.0f} records/s (copy + verify + switch + purge)")
        # Wall time swings with the machine's other work; the mover's own CPU much less.
        print(f"mover CPU: {cpu / max(moved, 1) * 1e6:.1f} us per record")
        print(pause_line("write pause per subject (mover)", report.pauses))
        seen = [p * 1000 for p in met.pauses]
        print(
            f"load: {counts['reads']} reads, {counts['writes']} writes, {counts['retried']} "
            f"answered 503 and retried, {counts['refused']} refused, {counts['errors']} errors; "
            f"pauses met: {len(seen)}"
            + (
                f", p50 {statistics.median(seen):.1f} ms, p99 {percentile(seen, 0.99):.1f} ms, "
                f"max {max(seen):.1f} ms"
                if seen
                else ""
            )
        )
        print(f"acknowledged writes lost: {lost} of {len(met.acknowledged)} records written")
        print(f"source records left: {left}; target records: {landed}")
        ok = left == 0 and landed == total and lost == 0
        ok = ok and counts["errors"] == 0 and counts["refused"] == 0
        ok = ok and report.remaining == 0
        print("OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        asyncio.run(databases_ctl(dsn, list(databases.values()), create=False))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
