"""``python -m bench`` (``make bench``): every workload, interleaved repeats, a table on stdout
and ``bench/RESULTS.md``, rendered from the run's raw figures in ``bench/RESULTS.json``
(``--render bench/RESULTS.json`` renders them again without measuring).

Order of a run: build the deployment; start domicile (``domicile serve``) and the baseline B;
warm both; then ``--repeats`` rounds, each running W1, W2 and W3 on both servers back to back
(the order of the two alternates between rounds; the idle server is stopped with SIGSTOP so its
background work cannot steal the other's CPU), the e-mail lookup over W1's subjects on domicile
right after its W1 run, and W4 on domicile; then the library paths (A, L,
W7) in a process of their own; then W5 and W6 through the moves and audit modules.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import deploy, report, servers
from bench.external import externals, run_external

HOT = 1000  # subjects of W1-W3 and the library paths, one record each
COLD = 2000  # W4 requests per repeat, each for a subject never read before
CONNECTIONS, COLD_CONNECTIONS = 32, 8
READY_PATH = f"/v1/subjects/{deploy.hot_id(0)}/records/{deploy.COLLECTION}/{deploy.KEY}"
HTTP_WORKLOADS = (("W1", "read"), ("W2", "write"), ("W3", "mix"))
LOOKUP = report.LOOKUP  # POST /v1/lookups/email over W1's subjects, domicile only


def drain_audit(dep: deploy.Deployment) -> None:
    """Let domicile's integrator catch up, so no backlog runs into the next run."""
    deploy.run(deploy.wait_for_integration(dep))


def run_http(dep: deploy.Deployment, repeats: int, seconds: int) -> dict[str, Any]:
    domicile = servers.start_domicile(dep.config, 8761, dep.root / "domicile.log")
    baseline = servers.start_baseline(
        deploy.pg_dsn(dep.baseline_db), 8762, dep.root / "baseline.log"
    )
    both = (domicile, baseline)
    dbs = {"domicile": [*dep.shard_dbs.values(), dep.catalog_db], "baseline": [dep.baseline_db]}

    def only(server: servers.Server) -> None:
        for other in both:
            if other is not server:
                other.pause()
        server.resume()

    runs: dict[str, list[servers.Run]] = {}

    def record(name: str, work: Callable[[], servers.Run]) -> None:
        runs.setdefault(name, []).append(work())

    try:
        for server in both:
            server.wait_ready(READY_PATH, dep.api_key)
        for server in both:  # warm-up: JIT-less but caches, pools and PostgreSQL buffers
            only(server)
            modes = ("read", "lookup", "write") if server is domicile else ("read", "write")
            for mode in modes:
                servers.wrk(server, dbs[server.name], mode, dep.api_key, "hot-", HOT, seconds=2)
            drain_audit(dep)
        for round_ in range(repeats):
            print(f"bench: HTTP round {round_ + 1}/{repeats}", flush=True)
            order = both if round_ % 2 == 0 else both[::-1]
            for workload, mode in HTTP_WORKLOADS:
                for server in order:
                    only(server)
                    record(
                        f"{workload}/{server.name}",
                        lambda s=server, m=mode: servers.wrk(
                            s,
                            dbs[s.name],
                            m,
                            dep.api_key,
                            "hot-",
                            HOT,
                            connections=CONNECTIONS,
                            seconds=seconds,
                        ),
                    )
                    if server is domicile and mode != "read":
                        drain_audit(dep)
                    if server is domicile and workload == "W1":
                        # The lookup workload right after W1 on the same server, every round:
                        # its ratio to W1 is taken pairwise, like domicile's to B.
                        record(
                            f"{LOOKUP}/domicile",
                            lambda: servers.wrk(
                                domicile,
                                dbs["domicile"],
                                "lookup",
                                dep.api_key,
                                "hot-",
                                HOT,
                                connections=CONNECTIONS,
                                seconds=seconds,
                            ),
                        )
            only(domicile)
            start = round_ * (COLD + 64)  # a fresh range each round; the spare absorbs overrun
            for name in ("W4 cold", "W4 warm"):  # the same subjects: first cold, then cached
                record(
                    f"{name}/domicile",
                    lambda start=start: servers.wrk(
                        domicile,
                        dbs["domicile"],
                        "cold",
                        dep.api_key,
                        "cold-",
                        COLD,
                        start_at=start,
                        connections=COLD_CONNECTIONS,
                        seconds=4,
                    ),
                )
    except Exception:
        for server in both:
            server.log.flush()
            tail = (dep.root / f"{server.name}.log").read_text(errors="replace")[-3000:]
            print(f"--- last lines of the {server.name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for server in both:
            server.stop()
    return {name: [run.__dict__ for run in values] for name, values in runs.items()}


def run_library(dep: deploy.Deployment, repeats: int) -> dict[str, Any]:
    print("bench: library paths (A, L, W7)", flush=True)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                *(sys.executable, "-m", "bench.library", "--config", str(dep.config)),
                *("--baseline-dsn", deploy.pg_dsn(dep.baseline_db), "--hot", str(HOT)),
                *("--repeats", str(repeats), "--json", out.name),
            ],
            check=True,
        )
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (>= 5)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument(
        "--skip-external",
        action="store_true",
        help="skip W5, W6 and W8: the report keeps the previous run's figures for them "
        "(from --output's RESULTS.json), labelled with that run's date",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="report file"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="FACTS",
        help="measure nothing: render the report again from a run's figures (RESULTS.json)",
    )
    args = parser.parse_args()
    facts = report.load_facts(args.render) if args.render else measure(args)
    print(report.console_table(facts))
    args.output.write_text(report.markdown(facts))
    print(f"bench: wrote {args.output}")


def measure(args: argparse.Namespace) -> report.Facts:
    wrk = servers.ensure_wrk()
    began = time.time()
    load_before = os.getloadavg()
    print("bench: building the deployment", flush=True)
    dep = deploy.run(deploy.create(hot=HOT, cold=args.repeats * (COLD + 64)))
    try:
        versions = deploy.run(report.server_versions(dep))
        http = run_http(dep, args.repeats, args.seconds)
        library = run_library(dep, args.repeats)
    finally:
        deploy.run(deploy.destroy(dep))
    jobs = externals()
    external_began = None
    figures = args.output.with_suffix(".json")
    if not args.skip_external:
        for job in jobs:
            run_external(job, timeout=300)
    elif figures.exists():  # a partial run: keep the last measured W5, W6 and W8, dated
        previous = report.load_facts(figures)
        jobs = previous.external
        external_began = previous.external_began or previous.began
    facts = report.Facts(
        began=began,
        seconds=time.time() - began,
        load=(load_before, os.getloadavg()),
        versions={**versions, "wrk": report.wrk_version(wrk)},
        settings={
            "repeats": args.repeats,
            "seconds": args.seconds,
            "connections": CONNECTIONS,
            "cold_connections": COLD_CONNECTIONS,
            "hot": HOT,
            "cold": COLD,
        },
        http=http,
        library=library,
        external=jobs,
        external_began=external_began,
    )
    report.save_facts(facts, figures)
    print(f"bench: wrote {figures}")
    return facts


if __name__ == "__main__":
    main()
