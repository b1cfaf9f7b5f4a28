"""Import rate: ``domicile import`` against a raw ``COPY FROM STDIN`` of the same records into
the same shard tables.

    python -m bench.imports [--subjects 20000] [--records 10] [--repeats 1] [--batch-size 1000]

Builds three PostgreSQL shard databases and a catalog (dropped at the end) and a JSON Lines file
of ``--subjects`` subjects of mixed jurisdictions with ``--records`` records of about 300 bytes
each. Each repeat measures, back to back on the same databases:

- the baseline: the same record rows (pseudonyms, placement and stored form computed
  beforehand, outside the timing) sent with asyncpg's ``COPY FROM STDIN`` into each shard's
  ``records`` table, all three at once, the subjects' rows loaded first and not timed;
- the import: the file read, parsed, placed, and written with every audit entry, through the
  importer ``domicile import`` runs (in this process, so interpreter start-up is left out).

Tables are emptied between the two. Prints records/s of each, the ratio (the issue's target is
0.3x or more) and the importer's CPU per record; with ``--memory``, the peak memory of
``domicile import`` itself on a quarter of the input and on all of it.

Needs the PostgreSQL server of the test suite (``--pg``); creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.deploy import JURISDICTIONS, RECORD_COLUMNS, SUBJECT_COLUMNS, record_body, topology_toml
from bench.moves import databases_ctl
from domicile.audit.events import Actor
from domicile.router.cli.imports import numbered_lines
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.importer import BATCH_SUBJECTS, Importer, Rejection
from domicile.shards.placement import choose_home
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, migrate
from domicile.shards.states import SubjectState
from domicile.shards.store import content_digest, encode_data

SHARDS = ("ru-msk-1", "eu-fra-1", "us-east-1")


def write_input(path: Path, subjects: int, records: int) -> None:
    with path.open("wb") as out:
        for i in range(subjects):
            line = {
                "subject_id": f"import-{i}",
                "jurisdiction": JURISDICTIONS[i % len(JURISDICTIONS)],
                "records": [
                    {"collection": "profile", "key": f"k{k}", "data": record_body(i * records + k)}
                    for k in range(records)
                ],
            }
            out.write(orjson.dumps(line) + b"\n")


async def prepare(config: Path) -> None:
    settings = load_settings(config)
    async with open_runtime(settings, prepare=False) as runtime:
        await migrate(runtime.catalog.engine, CATALOG_HISTORY, "upgrade", "head")
        for shard in runtime.registry.all():
            await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
    async with open_runtime(settings):  # records identities and residency guards
        pass


async def baseline_rows(config: Path, subjects: int, records: int) -> dict[str, Any]:
    """Per shard: its subjects' rows and its records' rows, as the import would write them."""
    settings = load_settings(config)
    now = datetime.now(UTC)
    rows: dict[str, Any] = defaultdict(lambda: ([], []))
    async with open_runtime(settings, prepare=False) as runtime:
        for i in range(subjects):
            jurisdiction = JURISDICTIONS[i % len(JURISDICTIONS)]
            p = runtime.pseudonyms.subject(f"import-{i}")
            shard = choose_home(settings.topology, jurisdiction, p).name
            held, written = rows[shard]
            held.append((p, f"import-{i}", jurisdiction, SubjectState.HOME, 1, now, now))
            for k in range(records):
                stored = encode_data(record_body(i * records + k))
                written.append(
                    (
                        p,
                        "profile",
                        f"k{k}",
                        stored.decode(),
                        1,
                        jurisdiction,
                        content_digest(stored),
                        now,
                        now,
                    )
                )
    return dict(rows)


async def copy_baseline(dsns: dict[str, str], rows: dict[str, Any]) -> float:
    """Seconds to COPY every shard's records, the three shards at once."""
    conns = {shard: await asyncpg.connect(dsn) for shard, dsn in dsns.items()}
    try:
        for shard, conn in conns.items():
            await conn.copy_records_to_table(
                "subjects", records=rows[shard][0], columns=SUBJECT_COLUMNS
            )
        started = time.monotonic()
        await asyncio.gather(
            *(
                conn.copy_records_to_table(
                    "records", records=rows[shard][1], columns=RECORD_COLUMNS
                )
                for shard, conn in conns.items()
            )
        )
        return time.monotonic() - started
    finally:
        for conn in conns.values():
            await conn.close()


async def run_import(config: Path, source: Path, batch: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of importing ``source``; lines rejected."""
    rejected: list[Rejection] = []
    async with open_runtime(load_settings(config)) as runtime:
        importer = Importer(
            runtime.settings.topology,
            runtime.registry,
            runtime.directory,
            runtime.pseudonyms,
            actor=Actor(key_id="bench", purpose="import"),
            max_record_bytes=runtime.settings.max_record_bytes,
        )
        with source.open("rb") as stream:
            started, cpu = time.monotonic(), time.process_time()
            await importer.run(numbered_lines(stream), reject=rejected.append, batch_subjects=batch)
            return time.monotonic() - started, time.process_time() - cpu, len(rejected)


def import_memory(config: Path, source: Path) -> float:
    """Peak resident memory (MiB) of ``domicile import source``, run as a user runs it. GNU
    time reports it: a child's own ``ru_maxrss`` would count this process's pages, which the
    child shares until it execs."""
    command = [sys.executable, "-m", "domicile.router.cli", "import", str(source)]
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(done.stderr.splitlines()[-1]) / 1024


async def empty(dsns: dict[str, str], catalog: str) -> None:
    for dsn in dsns.values():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("TRUNCATE subjects, records, audit_pending CASCADE")
        finally:
            await conn.close()
    conn = await asyncpg.connect(catalog)
    try:
        await conn.execute("TRUNCATE directory")
    finally:
        await conn.close()


async def counts(dsns: dict[str, str]) -> tuple[int, int]:
    """Records and audit entries across the shards."""
    records = entries = 0
    for dsn in dsns.values():
        conn = await asyncpg.connect(dsn)
        try:
            records += await conn.fetchval("SELECT count(*) FROM records")
            entries += await conn.fetchval(
                "SELECT (SELECT count(*) FROM audit_pending) + (SELECT count(*) FROM audit_entries)"
            )
        finally:
            await conn.close()
    return records, entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--memory", action="store_true", help="also the command's peak memory, two input sizes"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SUBJECTS, help="subjects per batch")
    args = parser.parse_args()

    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    databases = {shard: f"{prefix}_{shard.replace('-', '_')}" for shard in SHARDS}
    catalog = f"{prefix}_catalog"
    dsn = args.pg.rstrip("/")
    driver = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    workdir = Path(tempfile.mkdtemp(prefix="domicile-bench-"))
    config = workdir / "domicile.toml"
    config.write_text(
        f'deployment = "bench"\ndata_dir = "{workdir / "data"}"\n'
        + topology_toml(
            {shard: f"{driver}/{db}" for shard, db in databases.items()},
            f"{driver}/{catalog}",
        )
    )
    dsns = {shard: f"{dsn}/{db}" for shard, db in databases.items()}
    source = workdir / "users.jsonl"
    total = args.subjects * args.records

    asyncio.run(databases_ctl(dsn, [*databases.values(), catalog], create=True))
    try:
        asyncio.run(prepare(config))
        write_input(source, args.subjects, args.records)
        rows = asyncio.run(baseline_rows(config, args.subjects, args.records))
        size = source.stat().st_size / 2**20
        print(f"{args.subjects} subjects x {args.records} records, {size:.0f} MiB of JSON Lines")
        ratios = []
        for repeat in range(1, args.repeats + 1):
            copy_s = asyncio.run(copy_baseline(dsns, rows))
            asyncio.run(empty(dsns, f"{dsn}/{catalog}"))
            import_s, cpu, rejected = asyncio.run(run_import(config, source, args.batch_size))
            landed, entries = asyncio.run(counts(dsns))
            assert rejected == 0, rejected
            assert landed == total, landed
            assert entries == total + args.subjects, entries
            asyncio.run(empty(dsns, f"{dsn}/{catalog}"))
            ratio = (total / import_s) / (total / copy_s)
            ratios.append(ratio)
            print(
                f"run {repeat}: raw COPY {total / copy_s:,.0f} records/s; import "
                f"{total / import_s:,.0f} records/s ({entries:,} audit entries included): "
                f"{ratio:.2f}x; importer CPU {cpu / total * 1e6:.1f} us per record"
            )
        print(f"import / raw COPY, median of {len(ratios)}: {statistics.median(ratios):.2f}x")
        if args.memory:
            # The same command on a quarter of the input, then on all of it.
            quarter = workdir / "quarter.jsonl"
            with source.open("rb") as full, quarter.open("wb") as out:
                out.writelines(line for n, line in enumerate(full) if n < args.subjects // 4)
            for path in (quarter, source):
                peak = import_memory(config, path)
                asyncio.run(empty(dsns, f"{dsn}/{catalog}"))
                mib = path.stat().st_size / 2**20
                print(f"domicile import of {mib:.0f} MiB: peak resident memory {peak:.0f} MiB")
    finally:
        asyncio.run(databases_ctl(dsn, [*databases.values(), catalog], create=False))
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
