"""Processes starting together (a rollout's routers, several `comply --dry-run`): every start-up
step that writes converges, one process at a time, and none crashes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from domicile.shards.api_keys import ApiKeys
from domicile.shards.catalog import Catalog
from domicile.shards.registry import open_registry
from domicile.shards.schema_runner import sync_shard
from tests.support.deployment import Deployment, query_shard

PROCESSES = 8


def start_together(args: list[str], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "domicile.router.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_embedded_first_start_by_many_processes(tmp_path: Path) -> None:
    """One data dir, first start: the catalog and shard migrations, identities and guards are
    made once, by whichever process gets there first, and the others wait for it."""
    env = {**os.environ, "DOMICILE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DOMICILE_CONFIG", None)
    done = start_together(["comply", "--dry-run"], env)
    assert [p.returncode for p in done] == [0] * PROCESSES, [p.stderr[-600:] for p in done]
    assert all("Traceback" not in p.stderr for p in done)


@pytest.mark.anyio
async def test_guard_syncs_started_together_converge(deployment: Deployment) -> None:
    """Many preparations of one shard at the same instant, each on its own connections (as
    processes are): all succeed and the guard ends up with exactly the new list."""
    settings = deployment.settings()
    wanted = frozenset({"RU", "DE", "FR"})
    async with AsyncExitStack() as stack:
        registries = [
            await stack.enter_async_context(open_registry(settings.topology))
            for _ in range(PROCESSES)
        ]
        # Connect first, so the syncs start together rather than at connection speed.
        await asyncio.gather(*(r["eu-fra-1"].probe() for r in registries))
        await asyncio.gather(*(sync_shard(r["eu-fra-1"], wanted) for r in registries))
    held = await query_shard(deployment, "eu-fra-1", "SELECT code FROM shard_jurisdictions")
    assert sorted(code for (code,) in held) == sorted(wanted)


@pytest.mark.anyio
async def test_the_first_admin_key_is_made_once(deployment: Deployment) -> None:
    """The embedded default's bootstrap admin key: of many processes finding no key, one makes
    it."""
    settings = deployment.settings()
    catalogs = [Catalog(settings.catalog_url) for _ in range(PROCESSES)]
    try:
        made = await asyncio.gather(
            *(ApiKeys(c).create_first_admin("bootstrap-admin") for c in catalogs)
        )
        assert sum(new is not None for new in made) == 1
        assert len(await ApiKeys(catalogs[0]).all()) == 1
    finally:
        await asyncio.gather(*(c.dispose() for c in catalogs))
