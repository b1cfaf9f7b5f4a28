"""Shard-operation fixtures: deployments whose policy or topology changes under them, and ways
to look at every shard directly (never through domicile) to prove where data is."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from domicile.audit.events import Actor
from domicile.router.cli import main
from domicile.router.config import Settings
from domicile.router.runtime import open_runtime
from tests.conftest import LOG_LEAVES, Deployment, query_shard

ACTOR = Actor(key_id="test")
SHARD_NAMES = ("ru-msk-1", "eu-fra-1", "us-east-1")


def set_policy(config: Path, rule: str, regions: list[str]) -> None:
    text = config.read_text()
    new, n = re.subn(
        rf"\[policy\.{rule}\]\nstore_in = \[[^\]]*\]",
        f"[policy.{rule}]\nstore_in = {json.dumps(regions)}",
        text,
    )
    assert n == 1
    config.write_text(new)


def set_accepting(config: Path, shard: str, accepts: bool) -> None:
    header = f"[shards.{shard}]\n"
    text = config.read_text()
    for value in ("true", "false"):
        text = text.replace(f"{header}accepts_new_subjects = {value}\n", header)
    assert header in text
    config.write_text(
        text.replace(header, f"{header}accepts_new_subjects = {str(accepts).lower()}\n")
    )


async def cli(config: Path, *args: str) -> Result:
    """``domicile …`` in-process, in a worker thread (it runs its own event loop)."""
    argv = [*args, "--config", str(config)]
    return await asyncio.to_thread(CliRunner().invoke, main, argv, catch_exceptions=False)


def domicile(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "domicile.router.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "domicile.router.cli", *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def seed(
    settings: Settings, subjects: dict[str, str], records: int = 3
) -> dict[tuple[str, str], dict[str, Any]]:
    """Register subjects (id -> jurisdiction) with ``records`` records each; returns the
    contents written, by (subject, key)."""
    written: dict[tuple[str, str], dict[str, Any]] = {}
    async with open_runtime(settings) as rt:
        for subject, jurisdiction in subjects.items():
            await rt.store.register(subject, jurisdiction, ACTOR)
            for k in range(records):
                data = {"secret": f"content-of-{subject}-{k}"}
                await rt.store.put(subject, "notes", f"k{k}", data, ACTOR)
                written[(subject, f"k{k}")] = data
    return written


@dataclass
class ShardView:
    """One shard's subjects and records, read straight from its database."""

    subjects: dict[str, tuple[str, str | None, str]]  # pseudonym -> (state, subject_id, j)
    records: Counter[str]  # pseudonym -> records held

    def home(self) -> set[str]:
        return {p for p, (state, _, _) in self.subjects.items() if state == "home"}


async def shard_view(dep: Deployment, shard: str) -> ShardView:
    rows = await query_shard(
        dep, shard, "SELECT pseudonym, state, subject_id, jurisdiction FROM subjects"
    )
    counts = await query_shard(
        dep, shard, "SELECT pseudonym, count(*) FROM records GROUP BY pseudonym"
    )
    return ShardView(
        {r[0]: (r[1], r[2], r[3]) for r in rows}, Counter({r[0]: int(r[1]) for r in counts})
    )


async def views(dep: Deployment) -> dict[str, ShardView]:
    return {shard: await shard_view(dep, shard) for shard in SHARD_NAMES}


async def audit_events(dep: Deployment, shard: str, event: str) -> list[dict[str, Any]]:
    rows = await query_shard(dep, shard, LOG_LEAVES)
    decoded = [json.loads(bytes(r[0])) for r in rows]
    return [e for e in decoded if e["event"] == event]


def assert_settled(shards: dict[str, ShardView], expected: dict[str, tuple[str, int]]) -> None:
    """Every subject (pseudonym -> (home shard, records)) is home exactly once, with all its
    records, and nowhere else holds its id, its records or an in-flight state."""
    for shard, view in shards.items():
        for p, (state, subject_id, _) in view.subjects.items():
            assert state in ("home", "gone"), (shard, p, state)
            if state == "gone":
                assert subject_id is None, (shard, p)
                assert view.records[p] == 0, (shard, p)
        for p, (home, n) in expected.items():
            if shard == home:
                assert view.subjects[p][0] == "home", (shard, p)
                assert view.subjects[p][1] is not None, (shard, p)
                assert view.records[p] == n, (shard, p, view.records[p], n)
            else:
                assert p not in view.home(), (shard, p)
                assert view.records[p] == 0, (shard, p)


async def verify_audit(dep: Deployment) -> Result:
    """Issue a checkpoint on every log (as a server would), then run the offline verifier."""
    async with open_runtime(dep.settings()) as rt:
        for shard in SHARD_NAMES:
            await rt.audit.checkpoint(shard)
    return await cli(dep.config, "audit", "verify", "--no-state")


@pytest.fixture
async def law_change(deployment: Deployment) -> tuple[Deployment, dict[str, str]]:
    """The seed scenario: RU subjects stored in the EU region while the policy allowed it; then
    the policy is changed to require Russia. Yields the deployment and its RU subjects."""
    set_policy(deployment.config, "RU", ["eu-fra"])
    ru = {f"ivan-{i}": "RU" for i in range(12)}
    await seed(deployment.settings(), {**ru, "de-0": "DE", "de-1": "FR", "us-0": "US"})
    set_policy(deployment.config, "RU", ["ru-msk"])
    return deployment, ru
