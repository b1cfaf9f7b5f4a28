"""Shard operations: a deployment's policy or topology changed under it, subjects seeded, and
ways to look at every shard directly (never through domicile) to prove where data is."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import Result

from domicile.audit.events import Actor
from domicile.router.config import Settings
from domicile.router.runtime import open_runtime
from tests.support.cli import cli
from tests.support.deployment import LOG_LEAVES, Deployment, query_shard

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
