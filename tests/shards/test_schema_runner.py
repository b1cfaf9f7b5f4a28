"""Schema migrations across shards: one revision per transaction, journaled in the catalog and
logged on each shard; a shard that fails stops the wave, the others stay consistent, and running
again resumes. A test-only revision 0002 (in a copy of the history) fails on the shard that
already has its table."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import migrations
from router.runtime import Runtime, open_runtime
from shards.schema_runner import DOWNGRADE, UPGRADE, current_revision, run_wave
from tests.conftest import Deployment, query_shard
from tests.ops.conftest import cli, seed

pytestmark = pytest.mark.anyio

REVISION_0002 = '''"""Test only: a note column on records and an extra table.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
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
    (copy / "versions" / "0002_test_extra.py").write_text(REVISION_0002)
    return copy


@pytest.fixture
async def seeded(deployment: Deployment) -> AsyncIterator[Runtime]:
    await seed(deployment.settings(), {"ivan": "RU", "anna": "DE", "joe": "US"}, records=2)
    async with open_runtime(deployment.settings()) as rt:
        yield rt


async def revisions(rt: Runtime) -> dict[str, str | None]:
    return {s.name: await current_revision(s.engine) for s in rt.registry.all()}


async def migrated_events(dep: Deployment, shard: str) -> list[dict[str, object]]:
    rows = await query_shard(dep, shard, "SELECT leaf FROM audit_entries ORDER BY id")
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

    first = await run_wave(rt.registry.all(), rt.catalog, UPGRADE, "0002", scripts=scripts)
    assert [(r.shard, r.status) for r in first] == [
        ("ru-msk-1", "migrated"),
        ("eu-fra-1", "failed"),
        ("us-east-1", "not started"),
    ]
    assert "extra" in (first[1].error or "")
    assert await revisions(rt) == {"ru-msk-1": "0002", "eu-fra-1": "0001", "us-east-1": "0001"}
    assert "note" not in await columns(dep, "eu-fra-1")  # its revision rolled back whole
    journal = await rt.catalog.migration_journal()
    assert [(e.shard, e.from_revision, e.to_revision, e.status) for e in reversed(journal)] == [
        ("ru-msk-1", "0001", "0002", "done"),
        ("eu-fra-1", "0001", "0002", "failed"),
    ]
    [logged] = await migrated_events(dep, "ru-msk-1")
    assert (logged["revision"], logged["from_revision"], logged["action"]) == (
        "0002",
        "0001",
        "upgrade",
    )
    assert await migrated_events(dep, "eu-fra-1") == []

    await query_shard(dep, "eu-fra-1", "DROP TABLE extra")
    second = await run_wave(rt.registry.all(), rt.catalog, UPGRADE, "0002", scripts=scripts)
    assert [r.status for r in second] == ["current", "migrated", "migrated"]
    assert set((await revisions(rt)).values()) == {"0002"}
    assert len(await migrated_events(dep, "ru-msk-1")) == 1  # nothing applied twice

    back = await run_wave(rt.registry.all(), rt.catalog, DOWNGRADE, "0001", scripts=scripts)
    assert [r.status for r in back] == ["migrated"] * 3
    assert set((await revisions(rt)).values()) == {"0001"}
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
    results = await run_wave(shards, seeded.catalog, UPGRADE, "0002", parallel=3, scripts=scripts)
    assert [r.status for r in results] == ["migrated", "failed", "migrated"]
    assert await revisions(seeded) == {"ru-msk-1": "0002", "eu-fra-1": "0001", "us-east-1": "0002"}


async def test_upgrade_and_downgrade_commands(deployment: Deployment) -> None:
    config = deployment.config
    offline = await cli(config, "shards", "upgrade", "base:head", "--sql")
    assert offline.exit_code == 0, offline.stderr
    dialect = "sqlite" if deployment.backend == "sqlite" else "postgresql"
    assert f"-- shard ru-msk-1 ({dialect}): base -> 0001" in offline.stdout
    assert offline.stdout.count("CREATE TABLE subjects") == 3
    assert ("SET SESSION lock_timeout = '5000ms';" in offline.stdout) == (dialect == "postgresql")

    down = await cli(config, "shards", "downgrade", "base", "--shard", "us-east-1")
    assert down.exit_code == 0, down.stdout + down.stderr
    assert down.stdout.strip() == "us-east-1: 0001 -> base (1 revisions applied)"
    pending = await cli(config, "shards", "upgrade", "--sql", "--shard", "us-east-1")
    assert "-- shard us-east-1" in pending.stdout
    assert "CREATE TABLE records" in pending.stdout

    up = await cli(config, "shards", "upgrade", "--lock-timeout", "2", "--parallel", "1")
    assert up.exit_code == 0, up.stdout + up.stderr
    assert up.stdout.splitlines() == [
        "ru-msk-1: already at 0001",
        "eu-fra-1: already at 0001",
        "us-east-1: base -> 0001 (1 revisions applied)",
    ]
    status = await cli(config, "shards", "status", "--format", "json")
    rows = json.loads(status.stdout)["shards"]
    assert {r["name"]: r["last_migration"]["status"] for r in rows if r["last_migration"]} == {
        "us-east-1": "done"
    }

    unknown = await cli(config, "shards", "downgrade", "nope")
    assert unknown.exit_code == 2
    assert "nope" in unknown.stderr
