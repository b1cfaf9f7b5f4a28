"""Topology changes: a shard added to a region takes new subjects only; a drained shard gives
all of its subjects to the other permitted shards and takes no new ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from domicile.router.runtime import open_runtime
from tests.support.cli import cli
from tests.support.deployment import (
    Deployment,
    create_databases,
    drop_databases,
    pg_url,
    query_shard,
)
from tests.support.shards import seed, set_accepting

pytestmark = pytest.mark.anyio


@pytest.fixture
async def second_us_shard(deployment: Deployment) -> AsyncIterator[Deployment]:
    """The deployment, with US subjects placed, and then a second shard in us-east."""
    await seed(deployment.settings(), {f"joe-{i}": "US" for i in range(20)}, records=1)
    if deployment.backend == "postgres":
        name = f"dom_{uuid.uuid4().hex[:10]}_us_east_2"
        await create_databases([name])
        url = pg_url(name)
    else:
        name = ""
        url = f"sqlite+aiosqlite:///{deployment.data_dir}/shards/us-east-2.sqlite"
    text = deployment.config.read_text()
    shard = f'[shards.us-east-2]\nregion = "us-east"\nurl = "{url}"\n\n'
    deployment.config.write_text(text.replace("[policy.RU]", shard + "[policy.RU]"))
    deployment.shard_urls["us-east-2"] = url
    yield deployment
    if name:
        await drop_databases([name])


async def placements(dep: Deployment, prefix: str, n: int) -> dict[str, str]:
    async with open_runtime(dep.settings(), prepare=False) as rt:
        found = {}
        for i in range(n):
            placement = await rt.directory.read(rt.pseudonyms.subject(f"{prefix}-{i}"))
            assert placement is not None
            found[f"{prefix}-{i}"] = placement.shard
    return found


async def test_a_new_shard_takes_new_subjects_and_a_drain_empties_it(
    second_us_shard: Deployment,
) -> None:
    dep = second_us_shard
    upgraded = await cli(dep.config, "shards", "upgrade", "--shard", "us-east-2")
    assert upgraded.exit_code == 0, upgraded.stdout + upgraded.stderr
    assert "us-east-2: base -> 0003" in upgraded.stdout

    assert set((await placements(dep, "joe", 20)).values()) == {"us-east-1"}  # placed ones stay
    await seed(dep.settings(), {f"ann-{i}": "US" for i in range(20)}, records=1)
    newcomers = await placements(dep, "ann", 20)
    assert set(newcomers.values()) == {"us-east-1", "us-east-2"}
    assert (await cli(dep.config, "comply")).exit_code == 0  # nothing is misplaced

    refused = await cli(dep.config, "shards", "drain", "us-east-2")
    assert refused.exit_code == 2
    assert "still accepts new subjects" in refused.stderr

    set_accepting(dep.config, "us-east-2", False)
    dry = await cli(dep.config, "shards", "drain", "us-east-2", "--dry-run")
    assert dry.exit_code == 1
    on_second = sum(1 for shard in newcomers.values() if shard == "us-east-2")
    assert f"US            us-east-2   us-east-1  {on_second}" in dry.stdout

    drained = await cli(dep.config, "shards", "drain", "us-east-2")
    assert drained.exit_code == 0, drained.stdout + drained.stderr
    assert set((await placements(dep, "ann", 20)).values()) == {"us-east-1"}
    held = await query_shard(dep, "us-east-2", "SELECT count(*) FROM records")
    homes = await query_shard(
        dep, "us-east-2", "SELECT count(*) FROM subjects WHERE state = 'home'"
    )
    assert held == homes == [(0,)]
    await seed(dep.settings(), {f"bob-{i}": "US" for i in range(10)}, records=1)
    assert set((await placements(dep, "bob", 10)).values()) == {"us-east-1"}

    status = await cli(dep.config, "shards", "status")
    assert status.exit_code == 0
    [line] = [row for row in status.stdout.splitlines() if row.startswith("us-east-2")]
    assert "no (draining)" in line
    assert "upgrade 0002 -> 0003 done" in line
