"""Placement: deterministic rendezvous choice, recorded so that adding a shard moves nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from domicile.audit.events import SYSTEM
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.errors import NoPermittedRegion
from domicile.shards.placement import choose_home
from domicile.shards.policy import Region, Rule, ShardSpec, Topology
from domicile.shards.schema_runner import SHARD_HISTORY, migrate, sync_shard


def topology(n_shards: int) -> Topology:
    return Topology(
        regions={"eu": Region("eu", "DE")},
        shards={
            f"eu-{i}": ShardSpec(f"eu-{i}", "eu", "sqlite+aiosqlite://") for i in range(n_shards)
        },
        rules={"default": Rule("default", ("eu",)), "CN": Rule("CN", ())},
    )


def test_choice_is_deterministic_and_even() -> None:
    topo = topology(4)
    picks = Counter(choose_home(topo, "DE", f"p{i}").name for i in range(4000))
    assert set(picks) == {"eu-0", "eu-1", "eu-2", "eu-3"}
    assert min(picks.values()) > 800
    assert choose_home(topo, "DE", "p1") == choose_home(topo, "DE", "p1")


def test_new_shard_only_attracts_its_share() -> None:
    before, after = topology(3), topology(4)
    moved = [
        i
        for i in range(3000)
        if choose_home(before, "DE", f"p{i}") != choose_home(after, "DE", f"p{i}")
    ]
    # Only subjects that the new shard wins change their *choice* (about a quarter).
    assert all(choose_home(after, "DE", f"p{i}").name == "eu-3" for i in moved)
    assert 500 < len(moved) < 1000


def test_no_permitted_region_raises() -> None:
    with pytest.raises(NoPermittedRegion):
        choose_home(topology(2), "CN", "p")


CONFIG = """
data_dir = "{data}"
[regions.eu-fra]
country = "DE"
{shards}
[policy.default]
store_in = ["eu-fra"]
"""


def shard_block(data: Path, names: list[str]) -> str:
    return "\n".join(
        f'[shards.{n}]\nregion = "eu-fra"\nurl = "sqlite+aiosqlite:///{data}/{n}.sqlite"'
        for n in names
    )


@pytest.mark.anyio
async def test_adding_a_shard_moves_nothing_already_placed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "domicile.toml"

    async def start(names: list[str]) -> dict[str, str]:
        config.write_text(CONFIG.format(data=data, shards=shard_block(data, names)))
        settings = load_settings(config)
        placements: dict[str, str] = {}
        async with open_runtime(settings) as rt:
            for shard in rt.registry.all():
                await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
                await sync_shard(shard, settings.topology.jurisdictions_for_shard(shard.name))
            for i in range(60):
                placement, _ = await rt.store.register(f"user{i}", "DE", SYSTEM)
                placements[f"user{i}"] = placement.shard
        return placements

    first = await start(["eu-fra-1"])
    assert set(first.values()) == {"eu-fra-1"}
    second = await start(["eu-fra-1", "eu-fra-2"])
    assert second == first  # registered subjects keep their home
    config.write_text(CONFIG.format(data=data, shards=shard_block(data, ["eu-fra-1", "eu-fra-2"])))
    async with open_runtime(load_settings(config)) as rt:
        new = [(await rt.store.register(f"new{i}", "DE", SYSTEM))[0].shard for i in range(40)]
    assert set(new) == {"eu-fra-1", "eu-fra-2"}
