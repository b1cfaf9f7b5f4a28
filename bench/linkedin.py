"""The seed scenario end to end: a user base abroad, a law that brings RU subjects home.

    python -m bench.linkedin [--subjects 2000] [--records 10] [--writers 8]

1. Three PostgreSQL shards (ru-msk-1, eu-fra-1, us-east-1), a PostgreSQL catalog and Redis,
   under the old policy: RU may be stored in eu-fra, so RU subjects live there.
2. Import ``--subjects`` subjects of mixed jurisdictions (half RU) with ``--records`` records
   each with ``domicile import`` (its importer, in this process as ``bench.imports`` runs it),
   placed by the old policy, audit entries included.
3. The machine's copy limit: a raw ``COPY (SELECT ...) | COPY`` pipe of the RU records from
   eu-fra-1's database into ru-msk-1's (``bench.moves.copy_limit``).
4. The law changes: RU must be in ru-msk. As docs/operations.md section 3 says, the routers
   restart with the new rule (the load process opens its runtime on the new configuration, so
   a write to an RU subject still abroad relocates it first) and ``comply`` runs while the W3
   mix (nine reads to one write) goes on over every subject.
5. The logs are checkpointed and verified offline (``domicile audit verify``).

Prints the import rate, the move rate and its ratio to the copy limit, the write pauses the
load met (refused writes retried until accepted, and relocations on write), acknowledged
writes lost (must be 0), writes refused, RU records left abroad, and the time per million
subjects extrapolated from the run. Creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from bench import deploy
from bench.imports import prepare, run_import
from bench.moves import (
    copy_limit,
    count,
    databases_ctl,
    lost_writes,
    move_all,
    pause_line,
    start_load,
    vacuum,
)
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.comply import Selection
from domicile.shards.importer import BATCH_SUBJECTS
from domicile.shards.moves import CUTOVER

SHARDS = {"ru-msk-1": "ru-msk", "eu-fra-1": "eu-fra", "us-east-1": "us-east"}
#: Every other subject is Russian; the rest are spread over the EU and elsewhere.
OTHERS = ("DE", "US", "FR", "BR")
OLD_RU, NEW_RU = '["eu-fra"]', '["ru-msk"]'

CONFIG = """\
deployment = "{name}"
data_dir = "{data_dir}"

[redis]
url = "{redis}"

[regions.ru-msk]
country = "RU"

[regions.eu-fra]
country = "DE"

[regions.us-east]
country = "US"

{shards}

[policy.RU]
store_in = {ru}

[policy.EU]
store_in = ["eu-fra"]

[policy.default]
store_in = ["us-east"]

[catalog]
url = "{catalog}"
"""


def jurisdiction(i: int) -> str:
    return "RU" if i % 2 == 0 else OTHERS[(i // 2) % len(OTHERS)]


def subject_id(i: int) -> str:
    return f"member-{i}"


def write_config(path: Path, name: str, databases: dict[str, str], ru: str) -> None:
    shards = "\n\n".join(
        f'[shards.{shard}]\nregion = "{region}"\nurl = "{deploy.pg_url(databases[shard])}"'
        for shard, region in SHARDS.items()
    )
    path.write_text(
        CONFIG.format(
            name=name,
            data_dir=path.parent / "data",
            redis=deploy.REDIS_URL,
            shards=shards,
            ru=ru,
            catalog=deploy.pg_url(databases["catalog"]),
        )
    )


def write_input(path: Path, subjects: int, records: int) -> None:
    """The user base as ``domicile import`` reads it: JSON Lines, one subject per line."""
    with path.open("wb") as out:
        for i in range(subjects):
            line = {
                "subject_id": subject_id(i),
                "jurisdiction": jurisdiction(i),
                "records": [
                    {"collection": "c", "key": f"k{k}", "data": deploy.record_body(i * records + k)}
                    for k in range(records)
                ],
            }
            out.write(orjson.dumps(line) + b"\n")


async def forget_cache(name: str) -> None:
    """The deployment's placements cached in Redis."""
    client = aioredis.from_url(deploy.REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"domicile:{name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def checkpoint_logs(config: Path) -> None:
    """Checkpoint every shard's log, as a serving router would."""
    async with open_runtime(load_settings(config)) as runtime:
        for shard in SHARDS:
            await runtime.audit.checkpoint(shard)


def verify_logs(config: Path) -> subprocess.CompletedProcess[str]:
    """Every shard's log verified offline, as an auditor would."""
    deploy.run(checkpoint_logs(config))
    command = [sys.executable, "-m", "domicile.router.cli", "audit", "verify", "--no-state"]
    return subprocess.run(
        [*command, "--config", str(config)], capture_output=True, text=True, check=False
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--writers", type=int, default=8, help="concurrent load tasks")
    parser.add_argument("--batch-size", type=int, default=1000, help="subjects copied together")
    parser.add_argument("--cutover-size", type=int, default=CUTOVER, help="subjects per pause")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()

    name = f"linkedin-{uuid.uuid4().hex[:8]}"
    databases = {
        role: f"bench_{name[-8:]}_{role.replace('-', '_')}" for role in [*SHARDS, "catalog"]
    }
    dsn = deploy.pg_dsn("").rstrip("/")
    workdir = Path(tempfile.mkdtemp(prefix="domicile-bench-"))
    config = workdir / "domicile.toml"
    ru_subjects = len([i for i in range(args.subjects) if jurisdiction(i) == "RU"])
    deploy.run(databases_ctl(dsn, list(databases.values()), create=True))
    try:
        write_config(config, name, databases, OLD_RU)
        deploy.run(prepare(config))
        print(
            f"importing {args.subjects} subjects x {args.records} records "
            f"({ru_subjects} RU, placed in eu-fra by the old policy) ..."
        )
        source = workdir / "members.jsonl"
        write_input(source, args.subjects, args.records)
        importing, _, rejected = deploy.run(run_import(config, source, BATCH_SUBJECTS))
        imported = args.subjects * args.records
        print(
            f"import: {imported / importing:,.0f} records/s ({imported} in {importing:.2f} s, "
            f"audit entries included; {rejected} lines rejected)"
        )
        deploy.run(vacuum(dsn, list(databases.values())))

        rows, piped = copy_limit(
            deploy.pg_dsn(databases["eu-fra-1"]),
            deploy.pg_dsn(databases["ru-msk-1"]),
            f"SELECT {', '.join(deploy.RECORD_COLUMNS)} FROM records WHERE jurisdiction = 'RU'",
        )
        limit = rows / piped
        print(f"copy limit (raw COPY pipe, the RU records): {limit:,.0f} records/s")

        # The law changes; routers restart with the new rule, then comply runs beside them.
        write_config(config, name, databases, NEW_RU)
        subjects = [subject_id(i) for i in range(args.subjects)]
        finish_load = start_load(config, subjects, args.records, args.writers)
        elapsed, cpu, report = deploy.run(
            move_all(config, Selection(), args.parallel, args.batch_size, args.cutover_size)
        )
        met = finish_load()

        moved = sum(report.records.values())
        abroad = "SELECT count(*) FROM records WHERE jurisdiction = 'RU'"
        left = deploy.run(count(dsn, databases["eu-fra-1"], abroad))
        home = deploy.run(count(dsn, databases["ru-msk-1"], "SELECT count(*) FROM records"))
        lost = deploy.run(lost_writes(config, met.acknowledged))
        verified = verify_logs(config)
        counts = met.counts
        relocated = ru_subjects - sum(report.moved.values())
        rate = moved / elapsed
        print(
            f"comply: {sum(report.moved.values())} subjects, {moved} records in {elapsed:.2f} s "
            f"beside the load ({relocated} RU subjects relocated by their first write before "
            f"comply reached them): {rate:,.0f} records/s, {rate / limit:.2f}x the copy limit; "
            f"mover CPU {cpu / max(moved, 1) * 1e6:.1f} us per record"
        )
        print(pause_line("write pause the load met", met.pauses) + f" ({len(met.pauses)} pauses)")
        print(pause_line("write pause per subject (mover)", report.pauses))
        print(
            f"load: {counts['reads']} reads, {counts['writes']} writes acknowledged, "
            f"{counts['retried']} answered 503 and retried, {counts['refused']} refused, "
            f"{counts['errors']} errors"
            + (f" (refused: {dict(met.refusals)})" if met.refusals else "")
        )
        print(f"acknowledged writes lost: {lost} of {len(met.acknowledged)} records written")
        print(f"RU records left abroad: {left}; RU records at home: {home}")
        print(
            "audit verify: "
            + ("ok" if verified.returncode == 0 else f"FAILED\n{verified.stdout}{verified.stderr}")
        )
        per_million = 1e6 / max(ru_subjects, 1)
        print(
            f"per million subjects of {args.records} records: import "
            f"{importing * 1e6 / args.subjects / 60:.1f} min, moving them home "
            f"{elapsed * per_million / 60:.1f} min (extrapolated from this run)"
        )
        ok = rejected == 0 and left == 0 and home == ru_subjects * args.records and lost == 0
        ok = ok and counts["errors"] == 0 and counts["refused"] == 0 and report.remaining == 0
        ok = ok and verified.returncode == 0
        print("OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        deploy.run(databases_ctl(dsn, list(databases.values()), create=False))
        deploy.run(forget_cache(name))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
