"""Evidence pack benchmark (not a timed test): writing a pack over a log of N entries, and
checking it offline. Each tenth entry registers a new subject, the others are its records, so
the replay holds N/10 subjects at the end (memory follows the subjects held, never the log's
length).

    python -m bench.evidence                     # SQLite in a temporary folder, 1M entries
    python -m bench.evidence --size 200000       # quicker

Goals (issue 15): verification >= 100,000 entries/s like ``audit verify``; memory flat in the
log's length. Peak memory is the process's resident high-water mark over each phase (reset
before it through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from bench.audit import ACTOR, REGION, bench_shard, rate
from domicile.audit.events import RECORD_PUT, SUBJECT_REGISTERED
from domicile.audit.evidence import LogReplay
from domicile.audit.evidence_check import check_pack
from domicile.audit.evidence_pack import write_pack
from domicile.audit.note import Signer
from domicile.audit.service import AuditService
from domicile.audit.store import IssuedCheckpoint
from domicile.shards.auditlog import Change, append_entries
from domicile.shards.log_store import ShardLogStore
from domicile.shards.policy import Rule, Topology
from domicile.shards.policy_log import log_policy
from domicile.shards.schema_runner import SHARD_HISTORY, migrate

TOPOLOGY = Topology({REGION.name: REGION}, {}, {"default": Rule("default", (REGION.name,))})


def changes(start: int, end: int) -> list[Change]:
    made, subject = [], ""
    for n in range(start, end):
        if n % 10 == 0:
            subject = secrets.token_hex(32)
            made.append(Change(SUBJECT_REGISTERED, subject, "DE"))
            continue
        fields = {"record": secrets.token_hex(32), "content_sha256": secrets.token_hex(32)}
        made.append(Change(RECORD_PUT, subject, "DE", {**fields, "version": 1}))
    return made


def peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def nothing(log: str, checkpoint: IssuedCheckpoint, replay: LogReplay) -> list[str]:
    return []


async def main(size: int) -> None:
    async with bench_shard("sqlite", "") as shard:
        await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
        async with shard.write() as conn:
            await log_policy(conn, shard, TOPOLOGY)
        for start in range(1, size, 20_000):
            async with shard.write() as conn:
                await append_entries(conn, shard, ACTOR, changes(start, min(size, start + 20_000)))
        log = ShardLogStore(shard)
        await log.integrate()
        service = AuditService([log], "bench", Signer.generate("domicile/bench"))
        with tempfile.TemporaryDirectory(prefix="domicile-evidence-") as folder:
            out = Path(folder) / "pack"
            peak_reset()
            base = peak_mb()
            started = time.perf_counter()
            await write_pack(service, out, "DE", {}, nothing)
            took = time.perf_counter() - started
            written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            print(
                f"pack over {size:,} entries: {took:.1f} s ({rate(size, took)}), "
                f"{written / 1e6:.0f} MB, peak memory {peak_mb() - base:+.0f} MB over {base:.0f} MB"
            )
            peak_reset()
            base = peak_mb()
            started = time.perf_counter()
            checked = check_pack(out)
            took = time.perf_counter() - started
            print(
                f"verify --evidence: {rate(checked.entries, took)}, "
                f"peak memory {peak_mb() - base:+.0f} MB over {base:.0f} MB"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the log")
    asyncio.run(main(parser.parse_args().size))
