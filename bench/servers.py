"""HTTP workloads: the servers under test as subprocesses, and wrk as the load generator in its
own process. Each run reports throughput, latency percentiles and the server's CPU per request.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LUA = Path(__file__).with_name("load.lua")
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_wrk() -> str:
    """wrk from Debian's package, installed if missing (the bench host runs us as root)."""
    if found := shutil.which("wrk"):
        return found
    print("bench: installing wrk (apt-get install -y wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "wrk"]
    error = ""
    # A fresh machine may have empty package lists: update once and try again.
    for command in (install, ["apt-get", "update"], install):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        except OSError as exc:  # no apt-get: not a Debian-like host
            error = str(exc)
            break
        error = (done.stderr.strip().splitlines() or [""])[-1]
        if found := shutil.which("wrk"):
            return found
    sys.exit(
        f"bench: wrk is needed and `apt-get install -y wrk` failed ({error}); "
        "install the Debian/Ubuntu package `wrk` and run again"
    )


def _cpu_seconds(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def database_cpu_seconds(databases: Sequence[str]) -> float:
    """CPU of the PostgreSQL backends serving ``databases`` (their process titles name the
    database): the server-side cost of a run, apart from the cluster's other clients."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
            if title.startswith("postgres: ") and any(f" {db} " in title for db in databases):
                total += _cpu_seconds(proc.name)
        except OSError:  # the process ended meanwhile
            continue
    return total


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def pause(self) -> None:
        """SIGSTOP: an idle server's background work must not steal CPU from the other's run."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def wait_ready(self, path: str, api_key: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see its log")
            client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                client.request("GET", path, headers={"Authorization": f"Bearer {api_key}"})
                if client.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
            finally:
                client.close()
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:.0f}s")


def start(name: str, command: list[str], port: int, log_path: Path) -> Server:
    log = log_path.open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return Server(name, proc, port, log)


def start_domicile(config: Path, port: int, log_path: Path) -> Server:
    domicile = Path(sys.executable).with_name("domicile")
    command = [str(domicile), "serve", "--config", str(config), "--port", str(port)]
    return start("domicile", command, port, log_path)


def start_baseline(dsn: str, port: int, log_path: Path) -> Server:
    command = [sys.executable, "-m", "bench.baseline_app", "--dsn", dsn, "--port", str(port)]
    return start("baseline", command, port, log_path)


@dataclass(frozen=True)
class Run:
    requests: int
    errors: int  # non-2xx answers and socket errors; a run with more than 1% fails the bench
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # server process CPU per request
    database_cpu_us: float  # CPU of its PostgreSQL backends per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(
    server: Server,
    databases: Sequence[str],
    mode: str,
    api_key: str,
    prefix: str,
    count: int,
    *,
    start_at: int = 0,
    connections: int = 32,
    seconds: int = 5,
) -> Run:
    command = [
        *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"),
        *("-s", str(LUA), server.url, "--", mode, api_key, prefix, str(count), str(start_at)),
    ]
    cpu_before, db_before = server.cpu_seconds(), database_cpu_seconds(databases)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    cpu = server.cpu_seconds() - cpu_before
    db_cpu = database_cpu_seconds(databases) - db_before
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    requests = int(summary["requests"])
    if summary["errors"] > requests / 100:
        raise RuntimeError(f"{server.name} {mode}: too many failed requests\n{done.stdout}")
    return Run(
        requests=requests,
        errors=int(summary["errors"]),
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        server_cpu_us=cpu / requests * 1e6,
        database_cpu_us=db_cpu / requests * 1e6,
    )
