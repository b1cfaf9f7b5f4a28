"""SIGKILL a real server during concurrent writes: after a restart every acknowledged write has its
entry, every stored change has its entry, and every log verifies (over HTTP and from the
databases)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from domicile.shards.pseudonym import Pseudonymizer
from tests.support.cli import invoke
from tests.support.deployment import LOG_LEAVES, SHARDS, Deployment, query_shard

pytestmark = pytest.mark.anyio

WORKERS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    domicile = Path(sys.executable).with_name("domicile")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(domicile), "serve", "--config", str(config), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            assert process.poll() is None, "the server exited"
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


async def write_until_killed(
    url: str, secret: str, acknowledged: list[tuple[str, ...]], enough: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {secret}"}

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        for i in range(10_000):
            subject = f"w{n}-{i}"
            jurisdiction = random.choice(["RU", "DE", "US"])
            try:
                registered = await client.post(
                    "/v1/subjects", json={"subject_id": subject, "jurisdiction": jurisdiction}
                )
                if registered.status_code == 201:
                    acknowledged.append(("subject", subject))
                put = await client.put(f"/v1/subjects/{subject}/records/notes/a", json={"i": i})
                if put.status_code == 200:
                    acknowledged.append(("record", subject, "notes", "a", put.json()["version"]))
                if len(acknowledged) >= 60:
                    enough.set()
            except httpx.TransportError:
                return

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        await asyncio.gather(*(worker(n, client) for n in range(WORKERS)))


async def logged(dep: Deployment) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for shard in SHARDS:
        for (leaf,) in await query_shard(dep, shard, LOG_LEAVES):
            event = json.loads(bytes(leaf))
            if event["event"] == "subject.registered":
                found.add(("subject", event["subject"]))
            elif event["event"] == "record.put":
                found.add(("record", event["record"], event["version"]))
            elif event["event"] == "policy.changed":  # each log's, from the first start
                found.add(("policy", event["log"], event["time"]))
    return found


async def stored(dep: Deployment, pseudonyms: Pseudonymizer) -> set[tuple[str, ...]]:
    rows: set[tuple[str, ...]] = set()
    for shard in SHARDS:
        for (pseudonym,) in await query_shard(dep, shard, "SELECT pseudonym FROM subjects"):
            rows.add(("subject", pseudonym))
        for subject_id, collection, key, version in await query_shard(
            dep,
            shard,
            "SELECT s.subject_id, r.collection, r.key, r.version FROM records r"
            " JOIN subjects s ON s.pseudonym = r.pseudonym",
        ):
            rows.add(("record", pseudonyms.record(subject_id, collection, key), version))
    return rows


async def test_sigkill_during_writes(deployment: Deployment, tmp_path: Path) -> None:
    created = await invoke(
        "keys", "create", "--config", deployment.config, "--name", "crash", "--scope", "admin"
    )
    secret = created.stdout.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    acknowledged: list[tuple[str, ...]] = []

    with server(deployment.config, port, log) as process:
        await until_up(url, process)
        enough = asyncio.Event()
        writes = asyncio.create_task(write_until_killed(url, secret, acknowledged, enough))
        # Kill once enough writes are acknowledged: a count, not a time, so a slow machine waits.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout=30)
        os.kill(process.pid, signal.SIGKILL)
        await writes
    assert len(acknowledged) >= 60, log.read_text()[-2000:]

    pseudonyms = Pseudonymizer(bytes.fromhex((deployment.data_dir / "pseudonym.key").read_text()))
    expected: set[tuple[str, ...]] = set()
    for item in acknowledged:
        if item[0] == "subject":
            expected.add(("subject", pseudonyms.subject(item[1])))
        else:
            expected.add(("record", pseudonyms.record(*item[1:4]), item[4]))
    # Rows first, entries second: a statement the killed server sent may still commit on
    # PostgreSQL in between, and then it is in the entries read after it, never only in the rows.
    rows = await stored(deployment, pseudonyms)
    entries = await logged(deployment)
    assert expected <= entries
    assert rows <= entries  # no change without its entry

    with server(deployment.config, port, log) as process:
        await until_up(url, process)
        over_http = await invoke(
            "audit", "verify", "--url", url, "--api-key", secret, "--state", tmp_path / "w.json"
        )
        assert over_http.exit_code == 0, over_http.output
        total = sum(int(line.split()[2]) for line in over_http.stdout.splitlines())
        assert total == len(entries)
    from_databases = await invoke("audit", "verify", "--config", deployment.config, "--no-state")
    assert from_databases.exit_code == 0, from_databases.output
