"""W5, W6 and W8 are measured by the moves, audit and evidence modules (``bench.moves``,
``bench.audit``, ``bench.evidence``): run each in its own process and pick its figures out of
what it prints."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field


@dataclass
class External:
    workload: str
    module: str
    args: list[str]
    #: figure name -> pattern whose first group is the number, as the module prints it
    figures: dict[str, str]
    output: str = ""
    seconds: float = 0.0
    status: str = "not yet measured"
    values: dict[str, float] = field(default_factory=dict)


def externals() -> list[External]:
    return [
        External(
            "W5",
            "bench.moves",
            [],
            {
                "records_per_s": r"throughput: ([\d,.]+) records/s",
                "mover_cpu_us": r"mover CPU: ([\d.]+) us per record",
                "pause_p50_ms": r"write pause per subject \(mover\): p50 ([\d.]+) ms",
                "pause_p99_ms": r"write pause per subject \(mover\):.*p99 ([\d.]+) ms",
                "observed_pause_p99_ms": r"pauses met: \d+, p50 [\d.]+ ms, p99 ([\d.]+) ms",
                "copy_limit_per_s": r"copy limit \(raw COPY pipe, same rows\): ([\d,.]+)",
                "alone_per_s": r"comply alone: ([\d,.]+) records/s",
                "alone_ratio": r"comply alone: [^,]+, ([\d.]+)x the copy limit",
                "lost_writes": r"acknowledged writes lost: (\d+)",
            },
        ),
        External(
            "W6",
            "bench.audit",
            ["--backend", "postgres"],
            {
                "append_per_s": r"append, 1 entry per transaction[^:]*: ([\d,.]+)/s",
                "append_floor_per_s": r"floor: 1-row INSERT[^:]*: ([\d,.]+)/s",
                "append_batched_per_s": r"append_entries, \d+ entries per transaction: ([\d,.]+)/s",
                "tree_size": r"inclusion proof at ([\d,]+):",
                "inclusion_p50_ms": r"inclusion proof at [\d,]+: p50 ([\d.]+) ms",
                "inclusion_p99_ms": r"inclusion proof at [\d,]+: p50 [\d.]+ ms, p99 ([\d.]+) ms",
                "verify_leaves_per_s": r"verification: ([\d,.]+)/s",
            },
        ),
        External(
            "W8",
            "bench.evidence",
            [],
            {
                "pack_entries_per_s": r"pack over [\d,]+ entries: [\d.]+ s \(([\d,.]+)/s",
                "pack_mb": r"pack over [\d,]+ entries: .*\), ([\d.]+) MB",
                "pack_peak_mb": r"pack over .*peak memory \+([\d.]+) MB",
                "verify_entries_per_s": r"verify --evidence: ([\d,.]+)/s",
            },
        ),
    ]


def run_external(job: External, timeout: float) -> None:
    if importlib.util.find_spec(job.module) is None:
        return
    print(f"bench: {job.workload}: python -m {job.module} {' '.join(job.args)}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", job.module, *job.args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        job.output = str(exc.stdout or "")
        job.status = f"timed out after {timeout:.0f} s"
        return
    finally:
        job.seconds = time.monotonic() - started
    job.output = done.stdout + (done.stderr if done.returncode else "")
    job.status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
    for name, pattern in job.figures.items():
        found = re.search(pattern, done.stdout)
        if found:
            job.values[name] = float(found.group(1).replace(",", ""))
