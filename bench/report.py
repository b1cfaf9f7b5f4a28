"""The table on stdout and ``bench/RESULTS.md``: medians, ratios against the baselines, and each
target met or explained."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench import deploy
from bench.external import External

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "asyncpg",
    "sqlalchemy",
    "orjson",
    "pydantic",
    "redis",
)


@dataclass
class Facts:
    began: float
    seconds: float
    load: tuple[tuple[float, float, float], tuple[float, float, float]]
    versions: dict[str, str]
    settings: dict[str, int]
    http: dict[str, list[dict[str, float]]]
    library: dict[str, Any]
    external: list[External]
    #: when W5, W6 and W8 were measured, if not in this run (``--skip-external`` keeps the
    #: previous run's figures for them)
    external_began: float | None = None


#: The lookup workload's name in ``Facts.http``: ``POST /v1/lookups/email`` over W1's subjects.
LOOKUP = "lookup"


def save_facts(facts: Facts, path: Path) -> None:
    """The run's raw figures, written before the report so that it can be rendered again."""
    path.write_text(json.dumps(dataclasses.asdict(facts), indent=1) + "\n")


def load_facts(path: Path) -> Facts:
    raw = json.loads(path.read_text())
    raw["load"] = tuple(tuple(values) for values in raw["load"])
    raw["external"] = [External(**job) for job in raw["external"]]
    return Facts(**raw)


@dataclass
class Target:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: not measured
    why: str = ""


async def server_versions(dep: deploy.Deployment) -> dict[str, str]:
    conn = await asyncpg.connect(deploy.pg_dsn(dep.catalog_db))
    try:
        postgres = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    client = aioredis.from_url(deploy.REDIS_URL)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return {"PostgreSQL": postgres, "Redis": str(info["redis_version"])}


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()[0]
    return first.split(" [")[0].removeprefix("wrk ")


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    memory = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": model,
        "memory": f"{memory:.1f} GiB",
        "kernel": platform.release(),
    }


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def _http(facts: Facts, name: str, field: str) -> float:
    return med([run[field] for run in facts.http[name]])


def _rps(facts: Facts, name: str) -> float:
    return med([run["requests"] / run["seconds"] for run in facts.http[name]])


def _cpu(facts: Facts, name: str) -> float:
    return med(facts.library["cpu_us"][name])


def _paired(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The median of the ratios of runs made back to back: a drift in the machine's other load
    moves both runs of a pair, so it cancels in their ratio."""
    return med([a / b for a, b in zip(ours, theirs, strict=True)])


def _rps_ratio(facts: Facts, workload: str) -> float:
    rps = {
        server: [r["requests"] / r["seconds"] for r in facts.http[f"{workload}/{server}"]]
        for server in ("domicile", "baseline")
    }
    return _paired(rps["domicile"], rps["baseline"])


def _cpu_ratio(facts: Facts, ours: str, theirs: str) -> float:
    cpu = facts.library["cpu_us"]
    return _paired(cpu[ours], cpu[theirs])


def targets(facts: Facts) -> list[Target]:
    found: list[Target] = []
    w1 = _rps_ratio(facts, "W1")
    found.append(
        Target(
            "W1 HTTP read throughput vs B",
            f"{w1:.2f}x",
            ">= 0.85x",
            w1 >= 0.85,
            "Per read domicile's server spends "
            f"{_http(facts, 'W1/domicile', 'server_cpu_us'):.0f} us of CPU against B's "
            f"{_http(facts, 'W1/baseline', 'server_cpu_us'):.0f} us, and its PostgreSQL "
            f"backends {_http(facts, 'W1/domicile', 'database_cpu_us'):.0f} us against "
            f"{_http(facts, 'W1/baseline', 'database_cpu_us'):.0f} us, on the same two cores. "
            "The server's extra is the API-key check, request id and Prometheus metrics, the "
            "subject's pseudonym and the directory lookup (FastAPI's per-request dependency "
            "resolution, which B pays, is skipped on the hot routes); PostgreSQL's extra is the "
            "fence row read with the record, in three databases with ten connections each "
            "rather than one with ten. See 'Where the time goes'.",
        )
    )
    if f"{LOOKUP}/domicile" in facts.http:
        found.append(_lookup_target(facts))
    w2 = _rps_ratio(facts, "W2")
    found.append(
        Target(
            "W2 write with audit entry vs B's upsert",
            f"{w2:.2f}x",
            ">= 0.75x",
            w2 >= 0.75,
            "Per write domicile's server spends "
            f"{_http(facts, 'W2/domicile', 'server_cpu_us'):.0f} us of CPU against B's "
            f"{_http(facts, 'W2/baseline', 'server_cpu_us'):.0f} us, and PostgreSQL "
            f"{_http(facts, 'W2/domicile', 'database_cpu_us'):.0f} us against "
            f"{_http(facts, 'W2/baseline', 'database_cpu_us'):.0f} us. PostgreSQL's extra is "
            "what a residency-safe write is: measured alone (16 writers, one statement each, "
            "medians of 5 interleaved runs), the audit entry costs about 35 us when written "
            "(a second row, its leaf about 400 bytes) and as much again when the integrator "
            "moves it into the log, the fence row locked FOR SHARE about 15 us, the residency "
            "guard trigger about 10 us, and the keys are 64-character pseudonyms rather than "
            "short ids. The server's extra is the entry (its leaf built, later hashed into the "
            "tree, checkpoints signed), the API key, two pseudonyms and the metrics; FastAPI's "
            "dependency resolution, which B pays, is skipped. Each of these is one of the "
            "guarantees that B does not give. See 'Where the time goes'.",
        )
    )
    one, pooled = (
        _cpu_ratio(facts, "L_get", "A_select"),
        _cpu_ratio(facts, "L_get", "A_select_pool"),
    )
    found.append(
        Target(
            "library read CPU/op vs raw asyncpg (A)",
            f"{one:.2f}x A on one connection ({_cpu(facts, 'L_get'):.1f} vs "
            f"{_cpu(facts, 'A_select'):.1f} us); {pooled:.2f}x A through B's pool "
            f"({_cpu(facts, 'A_select_pool'):.1f} us)",
            "<= 1.3x",
            one <= 1.3,
            f"The library adds {_cpu(facts, 'L_get') - _cpu(facts, 'A_select'):.0f} us to the "
            f"{_cpu(facts, 'A_select'):.0f} us of a prepared statement on one connection, the "
            "driver's floor. Its own Python, timed alone, is about 8 us a read (the subject's "
            "pseudonym 2 us, the cache lookup 1 us, the id checks, the answer 2 us); the rest "
            "is the round trip, whose system time on this VM grows with the work around it "
            "and with the server's answer time (the fence row joined to the record, one of "
            "three databases): in development runs, a loop of the raw statement cost 5 us more "
            "per read with only the pseudonym added, 23 us more with all of it. Against "
            "asyncpg's pool, which any concurrent service needs to share connections, the "
            f"library costs {pooled:.2f}x. A itself ranged from 25 to 125 us between runs on "
            "this VM (most of it system time for the round trip's wake-ups), and the ratio "
            "moves with it: 1.34x in the previous recorded run.",
        )
    )
    routing = _cpu_ratio(facts, "W7_pg_300", "L_get")
    found.append(
        Target(
            "W7 routing: read CPU/op, 300 shards configured vs 3",
            f"{routing:.2f}x",
            "<= 1.1x",
            routing <= 1.1,
            "Routing a read is a cache lookup and a dictionary lookup, whatever the shard count.",
        )
    )
    spread = _cpu_ratio(facts, "W7_sqlite_300", "W7_sqlite_3")
    found.append(
        Target(
            "W7 all shards in use: read CPU/op, 300 SQLite shards vs 3",
            f"{spread:.2f}x",
            "<= 1.1x",
            spread <= 1.1,
            "The routing is the same as above; what grows is that consecutive reads land on "
            "300 different SQLite connections, each with its own worker thread, file, page "
            "cache and SQLAlchemy pool, so the CPU caches hold less of what each read touches. "
            "cProfile counts the same calls in both (1,010 per read).",
        )
    )
    by_workload = {job.workload: job for job in facts.external}
    w5, w6 = by_workload["W5"], by_workload["W6"]
    first_external = len(found)
    found += [
        *_moves(w5),
        _external(
            w6,
            "inclusion_p50_ms",
            "W6 inclusion proof at 1M entries, p50",
            " ms",
            "< 5 ms",
            5,
            True,
        ),
        _external(w6, "verify_leaves_per_s", "W6 audit verify", " leaves/s", ">= 100,000/s", 1e5),
        _external(
            w6, "append_batched_per_s", "W6 append, batched", " entries/s", ">= 10,000/s", 10_000
        ),
        _append_per_commit(w6),
    ]
    if facts.external_began is not None:
        for target in found[first_external:]:
            target.name += f" (run of {_date(facts.external_began)})"
    return found


def _date(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _lookup_ratio(facts: Facts) -> float:
    """Lookup req/s against domicile's W1 req/s, paired by round (the two run back to back)."""
    rps = {
        name: [r["requests"] / r["seconds"] for r in facts.http[f"{name}/domicile"]]
        for name in (LOOKUP, "W1")
    }
    return _paired(rps[LOOKUP], rps["W1"])


def _lookup_target(facts: Facts) -> Target:
    name = f"{LOOKUP}/domicile"
    ratio = _lookup_ratio(facts)
    return Target(
        "lookup by e-mail (POST /v1/lookups/email) vs W1 point read",
        f"{ratio:.2f}x ({_rps(facts, name):,.0f} vs {_rps(facts, 'W1/domicile'):,.0f} req/s; "
        f"p50 {_http(facts, name, 'p50_ms'):.1f} ms, p99 {_http(facts, name, 'p99_ms'):.1f} ms)",
        ">= 0.7x",
        ratio >= 0.7,
        "Per lookup domicile's server spends "
        f"{_http(facts, name, 'server_cpu_us'):.0f} us of CPU against "
        f"{_http(facts, 'W1/domicile', 'server_cpu_us'):.0f} us per point read, and its "
        f"PostgreSQL backends {_http(facts, name, 'database_cpu_us'):.0f} us against "
        f"{_http(facts, 'W1/domicile', 'database_cpu_us'):.0f} us. A lookup parses a JSON "
        "body, normalises the e-mail (email-validator, about 40 us alone on this machine), "
        "computes its blind index (HMAC-SHA256), reads the directory by it and the home shard "
        "for the subject id; and `POST /v1/lookups/{kind}` is still an ordinary FastAPI route "
        "(its body a pydantic model, resolved through the dependency machinery), not one of "
        "the `DirectRoute`s that took about 150 us off W1's read (item 3 below).",
    )


def _append_per_commit(job: External) -> Target:
    """One entry per transaction is bounded by the server's commit rate, which the bench
    measures beside it (the same writers inserting one row into a table without indexes)."""
    target = _external(
        job,
        "append_per_s",
        "W6 append, one entry per transaction (16 writers)",
        " entries/s",
        ">= 10,000/s",
        10_000,
    )
    floor = job.values.get("append_floor_per_s")
    if target.met is False and floor is not None:
        target.why = (
            "every entry here is its own durable commit (as when each record write is its own "
            f"request), and this machine's PostgreSQL commits at most {floor:,.0f} one-row "
            "transactions a second with the same 16 writers (a table without indexes, measured "
            "in the same run: each commit waits for its WAL flush, which group commit shares "
            f"only among the writers waiting at that moment): the log gets "
            f"{job.values['append_per_s'] / floor:.0%} of that floor. Raising it would mean "
            "weakening durability (synchronous_commit, fsync), which the log exists to "
            "provide. Entries appended together, as moves and imports do, reach the target "
            "(the row above)."
        )
    return target


def _moves(job: External) -> list[Target]:
    ratio = _external(
        job, "alone_ratio", "W5 comply alone vs the raw COPY pipe", "x", ">= 0.3x", 0.3
    )
    rate = _external(
        job, "records_per_s", "W5 comply beside the W3 mix: records moved", "/s", ">= 50,000/s", 5e4
    )
    pause = _external(
        job, "pause_p99_ms", "W5 write pause per subject, p99", " ms", "< 100 ms", 100, True
    )
    limit = job.values.get("copy_limit_per_s")
    if ratio.met is False and limit is not None:
        ratio.why = (
            f"the raw pipe moved {limit:,.0f} records/s in the same run. Each batch of 1000 "
            "subjects is copied by one streamed COPY and fingerprinted in both databases, then "
            "cut over 50 at a time: on this machine the 20 cutovers (five statements each, on "
            "three databases) take about as long as the copy, and the source snapshot and the "
            "target's read-back hash every record once more than the pipe does "
            "(docs/operations.md section 7)."
        )
    cpu = job.values.get("mover_cpu_us")
    if rate.met is False and cpu is not None:
        rate.why = (
            f"the mover spends {cpu:.0f} us of CPU per record (the HMAC record pseudonyms of "
            "the verification digest, the journal, the cutovers); the rows themselves no longer "
            "pass through Python. The rest is the three databases and the load on the same two "
            "cores; see docs/operations.md section 7 for the cost per step."
        )
    p50 = job.values.get("pause_p50_ms")
    if pause.met is False and p50 is not None:
        pause.why = (
            "inside the pause a chunk of 50 subjects runs five statements (fence, fingerprint "
            "comparison with the re-copy of subjects written in the last moments, the target's "
            f"home, the source's read fence, the directory switch), {p50:.0f} ms at the median; "
            "each is a round trip that stretches when the load, three databases and the mover "
            "compete for two cores (docs/operations.md section 7)."
        )
    return [ratio, rate, pause]


def _external(
    job: External,
    figure: str,
    name: str,
    unit: str,
    goal: str,
    limit: float,
    below: bool = False,
) -> Target:
    value = job.values.get(figure)
    if value is None:
        why = f"`python -m {job.module}`: {job.status}"
        return Target(name, "not yet measured", goal, None, why)
    met = value < limit if below else value >= limit
    why = "" if met else f"measured by `python -m {job.module}`; its output is below"
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return Target(name, shown + unit, goal, met, why)


def _verdict(target: Target) -> str:
    return {True: "met", False: "missed", None: "not measured"}[target.met]


def _http_rows(facts: Facts) -> list[list[str]]:
    rows = []
    for workload, label in (("W1", "point read"), ("W2", "write"), ("W3", "90/10 mix")):
        dom, base = f"{workload}/domicile", f"{workload}/baseline"

        def pair(field: str, digits: int, dom: str = dom, base: str = base) -> str:
            return f"{_http(facts, dom, field):.{digits}f} / {_http(facts, base, field):.{digits}f}"

        rows.append(
            [
                f"{workload} {label}",
                f"{_rps(facts, dom):,.0f}",
                f"{_rps(facts, base):,.0f}",
                f"{_rps_ratio(facts, workload):.2f}x",
                pair("p50_ms", 1),
                pair("p99_ms", 1),
                pair("server_cpu_us", 0),
                pair("database_cpu_us", 0),
            ]
        )
        if workload == "W1" and f"{LOOKUP}/domicile" in facts.http:
            name = f"{LOOKUP}/domicile"
            rows.append(
                [
                    "lookup by e-mail (B: none)",
                    f"{_rps(facts, name):,.0f}",
                    "-",
                    f"{_lookup_ratio(facts):.2f}x W1",
                    f"{_http(facts, name, 'p50_ms'):.1f} / -",
                    f"{_http(facts, name, 'p99_ms'):.1f} / -",
                    f"{_http(facts, name, 'server_cpu_us'):.0f} / -",
                    f"{_http(facts, name, 'database_cpu_us'):.0f} / -",
                ]
            )
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


HTTP_HEADER = (
    "workload",
    "domicile req/s",
    "B req/s",
    "ratio",
    "p50 ms (dom / B)",
    "p99 ms (dom / B)",
    "server CPU us/req (dom / B)",
    "PostgreSQL CPU us/req (dom / B)",
)


def _library_rows(facts: Facts) -> list[list[str]]:
    lib = facts.library["cpu_us"]
    names = {
        "A_select": "A: asyncpg prepared point SELECT, one connection",
        "A_select_pool": "A: the same through B's asyncpg pool (acquire, fetch, release)",
        "A_insert": "A: asyncpg prepared INSERT, one connection (own transaction)",
        "L_get": "L: RecordStore.get, directory cache hit, PostgreSQL shards",
        "L_put": "L: RecordStore.put with its audit entry",
        "W7_pg_300": "W7: L with 297 more (idle) shards configured",
        "W7_sqlite_3": "W7: RecordStore.get, 3 SQLite shards",
        "W7_sqlite_300": "W7: RecordStore.get, 300 SQLite shards",
    }
    return [[label, f"{med(lib[key]):.1f}"] for key, label in names.items() if key in lib]


def console_table(facts: Facts) -> str:
    parts = [_text_table(HTTP_HEADER, _http_rows(facts)), ""]
    parts.append(_text_table(("library path", "CPU us/op"), _library_rows(facts)))
    parts.append("")
    parts.append(
        _text_table(
            ("target", "measured", "goal", ""),
            [[t.name, t.measured, t.goal, _verdict(t)] for t in targets(facts)],
        )
    )
    return "\n".join(parts)


def markdown(facts: Facts) -> str:
    s = facts.settings
    when = _date(facts.began)
    versions = {"Python": sys.version.split()[0], **facts.versions}
    versions |= {name: importlib.metadata.version(name) for name in PACKAGES}
    load_before, load_after = facts.load
    found = targets(facts)
    cold, warm = "W4 cold/domicile", "W4 warm/domicile"
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench`) on {when}; the run took "
        f"{facts.seconds / 60:.1f} minutes. Every figure is the median of {s['repeats']} "
        "interleaved repeats. Regenerate with `make bench`; nothing here is edited by hand.",
        "",
        "## Machine and versions",
        "",
        _md_table(("", ""), [[k, v] for k, v in machine().items()]),
        "",
        f"Load average (1, 5, 15 min) before the run {_load(load_before)}, after "
        f"{_load(load_after)}: on a shared machine the absolute figures move with its other "
        "work; the ratios, from back-to-back interleaved runs, move less.",
        "",
        _md_table(("software", "version"), [[k, v] for k, v in versions.items()]),
        "",
        "## Targets",
        "",
        _md_table(
            ("target", "measured", "goal", "verdict"),
            [[t.name, t.measured, t.goal, _verdict(t)] for t in found],
        ),
        "",
    ]
    for target in found:
        if target.met is not True and target.why:
            out += [f"- **{target.name}** ({_verdict(target)}): {target.why}"]
    out += [
        "",
        "## HTTP workloads (W1-W3, lookup)",
        "",
        f"wrk, its own process, `-t1 -c{s['connections']} -d{s['seconds']}s`, the same script "
        f"(`bench/load.lua`) for both servers: point reads of {s['hot']} subjects' records in "
        "turn (W1), upserts of four records per subject (W2), and nine reads to one write "
        "(W3); the lookup row finds the same subjects by their e-mail lookup keys, "
        "`POST /v1/lookups/email` with the value in the JSON body, run on domicile right after "
        "its W1 run in every round (B has no lookup keys), and its ratio is to domicile's W1 "
        "req/s, paired by round. domicile: `domicile serve` over three PostgreSQL shard "
        "databases and a PostgreSQL catalog, Redis as the directory cache, every write with its "
        "audit entry. B: `bench/baseline_app.py`, FastAPI and an asyncpg pool on one "
        "database, same uvicorn settings (one worker, uvloop, httptools, no access log), same "
        "JSON library, no residency. Server CPU is the server process's user+system time over "
        "the run divided "
        "by its requests; PostgreSQL CPU the same for the backends serving its databases.",
        "",
        _md_table(HTTP_HEADER, _http_rows(facts)),
        "",
        "## W4: cold directory",
        "",
        f"Each repeat reads {s['cold']} subjects that no router has resolved (`-c"
        f"{s['cold_connections']}`): the LRU misses, Redis misses, the catalog answers, Redis "
        "and the LRU are filled. Then the same subjects again (warm: an LRU hit).",
        "",
        _md_table(
            ("", "p50 ms", "p99 ms", "server CPU us/req"),
            [
                [
                    label,
                    f"{_http(facts, name, 'p50_ms'):.2f}",
                    f"{_http(facts, name, 'p99_ms'):.2f}",
                    f"{_http(facts, name, 'server_cpu_us'):.0f}",
                ]
                for label, name in (("cold (catalog)", cold), ("warm (LRU)", warm))
            ],
        ),
        "",
        "## Library paths (CPU per operation)",
        "",
        "`time.process_time` over sequential operations in one process on uvloop (the "
        "process's own CPU: PostgreSQL's work is not in it), `bench/library.py`. W7 is "
        "measured twice: (a) the PostgreSQL deployment with 297 more shards configured on "
        "databases that are never connected to (300 real PostgreSQL databases are too heavy "
        "for this machine); (b) 3 against 300 SQLite shard files, every shard holding "
        "subjects.",
        "",
        _md_table(("library path", "CPU us/op"), _library_rows(facts)),
        "",
    ]
    placement = facts.library.get("placement_us", {})
    if placement:
        out += [
            "Choosing a new subject's home shard (rendezvous hashing, once per subject, at "
            "registration) is linear in the candidate shards by design: "
            + ", ".join(f"{v:.1f} us with {k} shards configured" for k, v in placement.items())
            + ".",
            "",
        ]
    out += ["## W5 and W6 (moves, audit)", ""]
    if facts.external_began is not None:
        out += [
            "Not measured in this run (`python -m bench --skip-external`): the figures in this "
            "section and the W5 and W6 targets are kept from the previous RESULTS.json, "
            f"measured in the run of {_date(facts.external_began)} unless a workload's line "
            "gives its own date.",
            "",
        ]
    for job in facts.external:
        command = f"python -m {job.module} {' '.join(job.args)}".strip()
        if not job.output:
            out += [f"{job.workload}: `{command}`: {job.status}.", ""]
            continue
        out += [
            f"{job.workload}: `{command}` ({job.status}, {job.seconds:.0f} s):",
            "",
            "```",
            job.output.strip(),
            "```",
            "",
        ]
    out += [WHERE_THE_TIME_GOES, "", "## Every run", ""]
    out.append(
        "HTTP: throughput (server CPU per request), or for W4, whose runs stop after a fixed "
        "number of requests, p50/p99 latency. Library: CPU per operation."
    )
    out.append("")
    for name, runs in facts.http.items():
        cells = ", ".join(
            (
                f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f} ms"
                if name.startswith("W4")
                else f"{r['requests'] / r['seconds']:,.0f} req/s ({r['server_cpu_us']:.0f} us)"
            )
            + (f" {r['errors']} failed" if r["errors"] else "")
            for r in runs
        )
        out.append(f"- {name}: {cells}")
    for name, values in facts.library["cpu_us"].items():
        out.append(f"- {name}: " + ", ".join(f"{v:.1f} us" for v in values))
    return "\n".join(out) + "\n"


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


WHERE_THE_TIME_GOES = """## Where the time goes, and what was optimised

Found with `py-spy record` on the servers under wrk (py-spy is in the `dev` extra), `cProfile` and
`py-spy record --native` on the library paths, and A/B runs of single changes. The figures in
this section are from those development runs on this machine (load average 3 to 5 from other
work, so +-20%), not from the run above.

What changed, and what it bought:

1. **One statement per hot path on PostgreSQL** (`shards/store.py`, `shards/engines.py`). The
   general path goes through SQLAlchemy: a pooled-connection checkout with greenlet hand-offs,
   statement compilation, and BEGIN and COMMIT around every statement, so a point read was three
   round trips and a put five. Now a read is one prepared statement that joins the fence row to
   the record, and a put one statement that locks the fence row `FOR SHARE`, upserts only if it
   says `home` and inserts the audit entry with the new version spliced into its leaf. Both run
   on a small pool of raw asyncpg connections whose checkout is a list pop (asyncpg's own pool
   costs about 30 us per checkout), each statement through its own `PreparedStatement` (5 us
   less than the connection's statement cache; re-prepared if a migration changes a table under
   it). A directory cache miss reads the catalog the same way. `RecordStore.get` 683 -> 70 us
   of CPU, `RecordStore.put` 2,317 -> 218 us (medians of 5 interleaved repeats). Over HTTP,
   before the changes below: W1 about 950 -> 2,600 req/s (server CPU 820-1,050 -> 310-330 us
   per read), W2 about 330 -> 1,100 req/s (2,200-2,600 -> 580-820 us per write).
2. **`gc.freeze()` once the app is built** (`domicile serve`; the baseline does the same).
   Every full collection walked the hundreds of thousands of long-lived objects of SQLAlchemy,
   alembic, pydantic and FastAPI. W1 server CPU 425 -> 313 us per read, 1,468 -> 2,044 req/s;
   the baseline gained as much (402 -> 306 us).
3. **The request around it** (`router/`): the single-record routes are `DirectRoute`s
   (`router/api/direct.py`) added to the app itself. FastAPI 0.165 matches a request through a
   wrapper per included router, and resolves every parameter through its dependency machinery
   (two exit stacks, pydantic validation of each path parameter, a second exception wrapper);
   these routes take only the `Request`, `str` path parameters and optional `str` headers, which
   cannot fail validation, so the route calls the endpoint directly and OpenAPI still documents
   it. W1 server CPU 437 -> 280 us per read in an A/B run (B: 300 us), W2 527 -> 409 us. The API
   key is checked by a plain call rather than a sub-dependency; Prometheus children
   are looked up once per route, not by `labels()` per request; the request id comes from
   `os.urandom` rather than a `UUID` object; a read's body embeds the stored JSON with
   `orjson.Fragment`. Key verification is single-flight: when a cached key expired under load,
   every concurrent request went to the catalog at once, and under `wrk -c32` that used up
   PostgreSQL's connections (503s).
4. **A stronger baseline.** B's asyncpg pool first ran asyncpg's default reset query on every
   release, a second round trip per request: without it B's read costs 176 instead of 290 us
   of server CPU and 45 instead of 141 us of PostgreSQL, about 4,500 instead of 1,800 req/s.
   The ratios above are against that B. Ten connections proved as fast as thirty.
5. **The audit leaf** (`audit/events.py`, by the audit log's owner after this profiling): for
   flat events of ASCII keys and string or integer values, `orjson` with sorted keys writes
   the same bytes as RFC 8785, 0.7 us instead of 30.6 us per leaf.
6. **A fair starting state.** The bench integrates the seeded log and runs `VACUUM ANALYZE`
   before measuring, so no run starts behind a backlog or with statistics taken over one.
7. **The residency guard's filter** (`shards/guard.py`). Every shard refuses, in the database,
   a row whose jurisdiction it may not hold; on PostgreSQL the trigger function looked the
   jurisdiction up in `shard_jurisdictions` on every insert and update, and an upsert fires it
   twice. The triggers now carry the permitted list as a `WHEN` filter, rewritten with the
   table in one transaction at start-up, so a permitted row never calls the function and any
   other row still meets the table lookup. A put measured alone with 16 writers (medians of 5
   interleaved runs): 248 us of PostgreSQL CPU with the unfiltered trigger, 200 us with the
   filter, 188 us with no trigger at all.
8. **The residency log** (`audit/`, `shards/auditlog.py`, shard revision 0002). Appends go to a
   queue, `audit_pending` (one index), and the integrator moves committed entries into the
   log in id order with their leaf index, in one statement on the transaction's own asyncpg
   connection, storing the tree nodes it completes with one multi-row insert. The log table is
   insert-only: no second version of every entry and no index entries for vacuum to clear (it
   used to get its index by an `UPDATE`, which could not be HOT since the index column is
   indexed, and a partial "pending" index that filled with dead entries). Integration 23k ->
   43k entries/s and then about 2x again with the queue, `audit verify` 65k -> 126k leaves/s at
   300k entries (hashing a page of leaves at a time, `CompactRange.extend`), PostgreSQL CPU per
   put about 20 us lower, half of it the integrator's.
9. **Moves** (`shards/moves.py`, `shards/bulk.py`, the journal in `shards/move_journal.py`; details
   in docs/operations.md section 7). Each step of a batch is one statement on PostgreSQL: the
   source read in one snapshot, `COPY` into the target, the fence with its audit entries,
   every journal step one prepared statement. Each subject's verification (record count,
   digest, a fingerprint of its rows) is computed from the copied rows outside the pause;
   inside it only the fence, one fingerprint comparison (subjects written since their copy are
   copied again), the target's `home` and the directory switch. A first round took the mover
   from about 5,300 to 6,500 records/s (its CPU per record 65 us); the journal round to 7,800
   records/s (44 us per record), pause p99 228 -> 196 ms. Then (issue 12): the source's
   `COPY TO` streams into the target's `COPY FROM` in binary, fingerprinted in both databases
   (no record contents in Python); batches of 1000 are copied at once and cut over 50 at a
   time, each chunk's writes since the copy caught up before its fence. The in-pause drift
   check no longer scans the whole records table for the drifted subjects' rows, and a
   chunk's cache entries are invalidated in one Redis round trip. On two cores shared with
   three databases and the load, PostgreSQL's round trips are the limit.

Where the rest goes:

- **A write** (W2): besides the entry, the lock and the guard above, the records table is keyed
  by 64-character pseudonyms (B's by short ids), and the server builds the leaf (its RFC 3339
  time and canonical JSON are 4% of a write's server CPU), integrates and signs. None of it can
  go without a guarantee going with it.
- **One entry per transaction** (W6 append): each is a durable commit, and the commit rate is
  the disk's: the bench measures that floor beside the log (the same writers inserting one row
  into a table without indexes); the log reached about 75% of it in development runs. Appends
  that share a transaction (moves, imports: `append_entries`) ran at 25-45k entries/s.
- **The library read** (A vs L): the library's own Python is about 8 us a read (pseudonym
  3 us, cache lookup, checks, the answer); the rest of the difference is the round trip, whose
  system time on this VM moves with the server's answer time (a join of the fence row to the
  record) and with the machine's load: A itself ranged from 25 to 125 us between runs."""
