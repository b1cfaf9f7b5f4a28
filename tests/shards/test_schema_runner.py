"""Schema migrations across shards: one revision per transaction, journaled in the catalog and
logged on each shard; a shard that fails stops the wave, the others stay consistent, and running
again resumes. A test-only revision 0004 (in a copy of the history) fails on the shard that
already has its table."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from domicile import migrations
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.schema_runner import DOWNGRADE, UPGRADE, current_revision, run_wave
from tests.support.cli import cli
from tests.support.deployment import LOG_LEAVES, Deployment, query_shard
from tests.support.shards import ACTOR, seed

pytestmark = pytest.mark.anyio

REVISION_0004 = '''"""Test only: a note column on records and an extra table.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("note", sa.Text, nullable=True))
    op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("extra")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    copy = tmp_path / "shard-history"
    source = Path(migrations.__file__).parent / "shard"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "0004_test_extra.py").write_text(REVISION_0004)
    return copy


@pytest.fixture
async def seeded(deployment: Deployment) -> AsyncIterator[Runtime]:
    await seed(deployment.settings(), {"ivan": "RU", "anna": "DE", "joe": "US"}, records=2)
    async with open_runtime(deployment.settings()) as rt:
        yield rt


async def revisions(rt: Runtime) -> dict[str, str | None]:
    return {s.name: await current_revision(s.engine) for s in rt.registry.all()}


async def migrated_events(dep: Deployment, shard: str) -> list[dict[str, object]]:
    rows = await query_shard(dep, shard, LOG_LEAVES)
    return [e for e in (json.loads(bytes(r[0])) for r in rows) if e["event"] == "schema.migrated"]


async def columns(dep: Deployment, shard: str) -> set[str]:
    if dep.backend == "sqlite":
        return {r[1] for r in await query_shard(dep, shard, "PRAGMA table_info(records)")}
    sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'records'"
    return {r[0] for r in await query_shard(dep, shard, sql)}


async def test_a_failing_shard_stops_the_wave_and_a_rerun_resumes(
    deployment: Deployment, seeded: Runtime, scripts: Path
) -> None:
    dep, rt = deployment, seeded
    await query_shard(dep, "eu-fra-1", "CREATE TABLE extra (id INTEGER PRIMARY KEY)")

    first = await run_wave(
        rt.registry.all(), rt.migration_journal, UPGRADE, "0004", scripts=scripts
    )
    assert [(r.shard, r.status) for r in first] == [
        ("ru-msk-1", "migrated"),
        ("eu-fra-1", "failed"),
        ("us-east-1", "not started"),
    ]
    assert "extra" in (first[1].error or "")
    assert await revisions(rt) == {"ru-msk-1": "0004", "eu-fra-1": "0003", "us-east-1": "0003"}
    assert "note" not in await columns(dep, "eu-fra-1")  # its revision rolled back whole
    journal = await rt.migration_journal.entries()
    assert [(e.shard, e.from_revision, e.to_revision, e.status) for e in reversed(journal)] == [
        ("ru-msk-1", "0003", "0004", "done"),
        ("eu-fra-1", "0003", "0004", "failed"),
    ]
    [logged] = await migrated_events(dep, "ru-msk-1")
    assert (logged["revision"], logged["from_revision"], logged["action"]) == (
        "0004",
        "0003",
        "upgrade",
    )
    assert await migrated_events(dep, "eu-fra-1") == []

    await query_shard(dep, "eu-fra-1", "DROP TABLE extra")
    second = await run_wave(
        rt.registry.all(), rt.migration_journal, UPGRADE, "0004", scripts=scripts
    )
    assert [r.status for r in second] == ["current", "migrated", "migrated"]
    assert set((await revisions(rt)).values()) == {"0004"}
    assert len(await migrated_events(dep, "ru-msk-1")) == 1  # nothing applied twice

    back = await run_wave(
        rt.registry.all(), rt.migration_journal, DOWNGRADE, "0003", scripts=scripts
    )
    assert [r.status for r in back] == ["migrated"] * 3
    assert set((await revisions(rt)).values()) == {"0003"}
    assert "note" not in await columns(dep, "us-east-1")
    assert [e["action"] for e in await migrated_events(dep, "us-east-1")] == [
        "upgrade",
        "downgrade",
    ]
    for shard in ("ru-msk-1", "eu-fra-1", "us-east-1"):  # the data went through untouched
        assert await query_shard(dep, shard, "SELECT count(*) FROM records") == [(2,)]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_parallel_wave_migrates_the_others(
    deployment: Deployment, seeded: Runtime, scripts: Path
) -> None:
    await query_shard(deployment, "eu-fra-1", "CREATE TABLE extra (id INTEGER PRIMARY KEY)")
    shards = seeded.registry.all()
    results = await run_wave(
        shards, seeded.migration_journal, UPGRADE, "0004", parallel=3, scripts=scripts
    )
    assert [r.status for r in results] == ["migrated", "failed", "migrated"]
    assert await revisions(seeded) == {"ru-msk-1": "0004", "eu-fra-1": "0003", "us-east-1": "0004"}


async def test_upgrade_and_downgrade_commands(deployment: Deployment) -> None:
    config = deployment.config
    offline = await cli(config, "shards", "upgrade", "base:head", "--sql")
    assert offline.exit_code == 0, offline.stderr
    dialect = "sqlite" if deployment.backend == "sqlite" else "postgresql"
    assert f"-- shard ru-msk-1 ({dialect}): base -> 0003" in offline.stdout
    assert offline.stdout.count("CREATE TABLE subjects") == 3
    assert ("SET SESSION lock_timeout = '5000ms';" in offline.stdout) == (dialect == "postgresql")

    down = await cli(config, "shards", "downgrade", "base", "--shard", "us-east-1")
    assert down.exit_code == 0, down.stdout + down.stderr
    assert down.stdout.strip() == "us-east-1: 0003 -> base (3 revisions applied)"
    pending = await cli(config, "shards", "upgrade", "--sql", "--shard", "us-east-1")
    assert "-- shard us-east-1" in pending.stdout
    assert "CREATE TABLE records" in pending.stdout

    up = await cli(config, "shards", "upgrade", "--lock-timeout", "2", "--parallel", "1")
    assert up.exit_code == 0, up.stdout + up.stderr
    assert up.stdout.splitlines() == [
        "ru-msk-1: already at 0003",
        "eu-fra-1: already at 0003",
        "us-east-1: base -> 0003 (3 revisions applied)",
    ]
    status = await cli(config, "shards", "status", "--format", "json")
    rows = json.loads(status.stdout)["shards"]
    assert {r["name"]: r["last_migration"]["status"] for r in rows if r["last_migration"]} == {
        "us-east-1": "done"
    }

    unknown = await cli(config, "shards", "downgrade", "nope")
    assert unknown.exit_code == 2
    assert "nope" in unknown.stderr


async def pending_index(dep: Deployment, shard: str) -> bool:
    sql = (
        "SELECT name FROM sqlite_master WHERE name = 'ix_audit_entries_pending'"
        if dep.backend == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_audit_entries_pending'"
    )
    return bool(await query_shard(dep, shard, sql))


async def test_0002_moves_unintegrated_entries_both_ways(
    deployment: Deployment, seeded: Runtime
) -> None:
    """Entries not yet integrated survive a downgrade to 0001 and an upgrade back with their ids
    and order, and are then integrated after the rest; new ids stay above every id of the log."""
    dep, rt, name = deployment, seeded, "ru-msk-1"
    shard, log = rt.registry[name], rt.audit.log(name)
    integrated = await log.integrate()
    await rt.store.put("ivan", "notes", "late", {"n": 1}, ACTOR)
    queued = await query_shard(dep, name, "SELECT id, leaf FROM audit_pending ORDER BY id")
    assert len(queued) == 1
    assert not await pending_index(dep, name)

    [down] = await run_wave([shard], rt.migration_journal, DOWNGRADE, "0001")
    assert down.status == "migrated", down.error
    sql = "SELECT id, leaf FROM audit_entries WHERE idx IS NULL ORDER BY id"
    at_0001 = await query_shard(dep, name, sql)
    assert at_0001[:-2] == queued  # then the downgrades' own entries (from 0003, 0002), later
    assert json.loads(at_0001[-1][1])["revision"] == "0001"
    assert await pending_index(dep, name)

    [up] = await run_wave([shard], rt.migration_journal, UPGRADE, "0002")
    assert up.status == "migrated", up.error
    at_0002 = await query_shard(dep, name, "SELECT id, leaf FROM audit_pending ORDER BY id")
    assert at_0002[:-1] == at_0001
    assert json.loads(at_0002[-1][1])["revision"] == "0002"
    assert not await query_shard(dep, name, sql)
    assert not await pending_index(dep, name)
    unindexed = "INSERT INTO audit_entries (id, leaf) VALUES (-1, $1)"  # as 0001's code appends
    with pytest.raises((sqlite3.IntegrityError, asyncpg.CheckViolationError)):
        await query_shard(dep, name, unindexed, b"{}")

    await rt.store.put("ivan", "notes", "later", {"n": 2}, ACTOR)
    [(newest,)] = await query_shard(dep, name, "SELECT max(id) FROM audit_pending")
    assert newest > at_0002[-1][0]
    assert await log.integrate() == integrated + 5
    leaves = [leaf for _, leaf in await log.leaves(integrated, integrated + 4)]
    assert leaves == [bytes(leaf) for _, leaf in at_0002]
    rows = await query_shard(dep, name, "SELECT id FROM audit_entries ORDER BY idx")
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
