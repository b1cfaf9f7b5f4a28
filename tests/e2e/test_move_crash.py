"""A move interrupted at any point is resumed, or rolled back, with nothing lost, nothing
duplicated and no stray copy: at each step of the state machine, and by ``kill -9`` of a real
``domicile comply`` at random moments."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from collections import Counter
from typing import Any

import asyncpg
import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.comply import Selection, comply
from domicile.shards.errors import ShardUnavailable
from domicile.shards.moves import BatchOutcome, Mover
from tests.support.cli import cli, spawn
from tests.support.deployment import Deployment, query_sqlite
from tests.support.shards import (
    ACTOR,
    assert_settled,
    audit_events,
    seed,
    set_policy,
    verify_audit,
    views,
)

pytestmark = pytest.mark.anyio


class Crash(BaseException):
    """The process dies here: nothing after this point runs, nothing is cleaned up."""


def dead_owner() -> str:
    """The journal identity of a process that has exited, as after kill -9."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}:crashed"


class CrashingMover(Mover):
    """Dies at ``point``: after the bulk copy, after fencing the source, after the target's
    home commit, after the directory switch, or after the purge."""

    point = ""

    async def _cutover(self, live: Any, outcome: BatchOutcome, copied: Any) -> None:
        if self.point == "copied":
            raise Crash
        await super()._cutover(live, outcome, copied)

    async def _verify(self, *args: Any) -> Any:
        if self.point == "fenced":
            raise Crash
        return await super()._verify(*args)

    async def _purge(self, live: Any, outcome: BatchOutcome) -> None:
        if self.point == "switched":
            raise Crash
        await super()._purge(live, outcome)

    async def _finish(self, live: Any, outcome: BatchOutcome) -> None:
        if self.point == "purged":
            raise Crash
        await super()._finish(live, outcome)


async def crash_comply(dep: Deployment, point: str) -> None:
    async with open_runtime(dep.settings()) as rt:
        if point == "target_home":

            async def die(*_: Any, **__: Any) -> Any:
                raise Crash

            rt.directory.switch = die  # type: ignore[method-assign]
        mover = CrashingMover(
            rt.settings.topology,
            rt.registry,
            rt.directory,
            rt.move_journal,
            rt.pseudonyms,
            owner=dead_owner(),
        )
        mover.point = point
        with pytest.raises(Crash):
            await comply(mover, Selection(), batch_size=100)


RESUMABLE = ["copied", "fenced", "target_home", "switched", "purged"]


@pytest.mark.general_path
@pytest.mark.parametrize("point", RESUMABLE)
async def test_resume_after_a_crash_at_each_step(
    law_change: tuple[Deployment, dict[str, str]], point: str
) -> None:
    dep, ru = law_change
    await crash_comply(dep, point)
    async with open_runtime(dep.settings()) as rt:
        ids = {rt.pseudonyms.subject(s) for s in ru}
        states = {p: s[0] for p, s in (await views(dep))["eu-fra-1"].subjects.items() if p in ids}
        if point == "fenced":
            assert set(states.values()) == {"moving_out"}  # writes there are refused
        if point in ("target_home", "switched"):  # the source serves no reads of its own
            assert set(states.values()) == {"switched_out"}
        assert (await rt.store.get("ivan-0", "notes", "k1")).version == 1  # reads go on
        if point == "switched":  # the directory names the new home: writes resume there
            record = await rt.store.put("ivan-1", "notes", "k0", {"early": True}, ACTOR)
            assert (record.shard, record.version) == ("ru-msk-1", 2)

    resumed = await cli(dep.config, "moves", "resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("moved ") == len(ru)
    listed = await cli(dep.config, "moves", "list")
    assert len(listed.stdout.strip().splitlines()) == 1  # the header: nothing unfinished

    assert_settled(await views(dep), {p: ("ru-msk-1", 3) for p in ids})
    outs = await audit_events(dep, "eu-fra-1", "subject.moved_out")
    ins = await audit_events(dep, "ru-msk-1", "subject.moved_in")
    assert sorted(e["subject"] for e in outs) == sorted(e["subject"] for e in ins) == sorted(ids)
    async with open_runtime(dep.settings()) as rt:
        record = await rt.store.put("ivan-1", "notes", "k0", {"after": True}, ACTOR)
        assert (record.shard, record.version) == ("ru-msk-1", 3 if point == "switched" else 2)


@pytest.mark.parametrize("point", ["copied", "fenced", "target_home", "switched"])
async def test_cancel_after_a_crash_rolls_back_until_the_switch(
    law_change: tuple[Deployment, dict[str, str]], point: str
) -> None:
    dep, ru = law_change
    await crash_comply(dep, point)
    cancelled = await cli(dep.config, "moves", "cancel", "--all")
    async with open_runtime(dep.settings(), prepare=False) as rt:
        ids = {rt.pseudonyms.subject(s) for s in ru}
    if point in ("copied", "fenced"):
        assert cancelled.exit_code == 0, cancelled.stdout
        assert cancelled.stdout.count("rolled back") == len(ru)
        assert_settled(await views(dep), {p: ("eu-fra-1", 3) for p in ids})
        assert (await views(dep))["ru-msk-1"].subjects == {}  # no stray copy
        assert await audit_events(dep, "ru-msk-1", "subject.moved_in") == []
    else:  # past the point of no return: finished instead, and said so
        assert cancelled.exit_code == 1
        assert cancelled.stdout.count("past its switch") == len(ru)
        assert_settled(await views(dep), {p: ("ru-msk-1", 3) for p in ids})


async def query_catalog(dep: Deployment, sql: str) -> list[tuple[Any, ...]]:
    url = dep.settings().catalog_url
    if url.startswith("sqlite"):
        return await asyncio.to_thread(query_sqlite, url.split("///", 1)[1], sql, ())
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("point", "relabel"),
    [
        ("copied", "UPDATE moves SET state = 'copying' WHERE finished_at IS NULL"),
        ("purged", "UPDATE moves SET state = 'purged' WHERE finished_at IS NULL"),
    ],
)
async def test_moves_left_copying_or_purged_by_an_earlier_release_resume(
    law_change: tuple[Deployment, dict[str, str]], point: str, relabel: str
) -> None:
    """This release no longer journals ``copying`` and ``purged``; moves an earlier release
    left in them (mid-upgrade) still finish, each audit entry appended once."""
    dep, ru = law_change
    await crash_comply(dep, point)
    await query_catalog(dep, relabel)
    resumed = await cli(dep.config, "moves", "resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    async with open_runtime(dep.settings(), prepare=False) as rt:
        ids = {rt.pseudonyms.subject(s) for s in ru}
    assert_settled(await views(dep), {p: ("ru-msk-1", 3) for p in ids})
    outs = await audit_events(dep, "eu-fra-1", "subject.moved_out")
    ins = await audit_events(dep, "ru-msk-1", "subject.moved_in")
    assert sorted(e["subject"] for e in outs) == sorted(e["subject"] for e in ins) == sorted(ids)


async def test_kill_9_of_comply_at_random_points_then_resume(deployment: Deployment) -> None:
    set_policy(deployment.config, "RU", ["eu-fra"])
    ru = {f"pyotr-{i}": "RU" for i in range(40)}
    await seed(deployment.settings(), ru, records=2)
    set_policy(deployment.config, "RU", ["ru-msk"])
    rng = random.Random()
    for _ in range(2):
        started = len(await query_catalog(deployment, "SELECT id FROM moves"))
        proc = spawn(deployment.config, "comply", "--batch-size", "1", "--parallel", "2")
        wanted = started + rng.randint(1, 8)
        for _ in range(3000):  # until enough moves are journaled, then at once
            moves = await query_catalog(deployment, "SELECT state FROM moves")
            if len(moves) >= wanted or proc.poll() is not None:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(rng.random() * 0.05)
        proc.kill()
        proc.communicate()
        # Mid-way: no subject is home twice, none is lost.
        shards = await views(deployment)
        homes = Counter(p for view in shards.values() for p in view.home())
        fenced = {
            p for view in shards.values() for p, s in view.subjects.items() if s[0] == "moving_out"
        }
        assert all(n == 1 for n in homes.values())
        assert len(homes.keys() | fenced) == len(ru)

    final = await cli(deployment.config, "comply")
    assert final.exit_code == 0, final.stdout + final.stderr
    async with open_runtime(deployment.settings(), prepare=False) as rt:
        ids = {rt.pseudonyms.subject(s) for s in ru}
    assert_settled(await views(deployment), {p: ("ru-msk-1", 2) for p in ids})
    journal = await query_catalog(deployment, "SELECT pseudonym, state FROM moves")
    assert Counter(p for p, state in journal if state == "done") == Counter(ids)
    assert {state for _, state in journal} <= {"done", "rolled_back", "failed"}
    outs = await audit_events(deployment, "eu-fra-1", "subject.moved_out")
    ins = await audit_events(deployment, "ru-msk-1", "subject.moved_in")
    assert sorted(e["subject"] for e in outs) == sorted(e["subject"] for e in ins) == sorted(ids)
    verified = await verify_audit(deployment)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


class FlakyTarget(Mover):
    """The target shard becomes unreachable just after the source was fenced."""

    async def _verify(self, *args: Any) -> Any:
        raise ShardUnavailable("ru-msk-1")


async def test_an_outage_mid_move_leaves_it_resumable_and_the_subject_writable(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    dep, ru = law_change
    set_policy(dep.config, "RU", ["ru-msk", "eu-fra"])  # the source stays permitted for writes
    async with open_runtime(dep.settings()) as rt:
        mover = FlakyTarget(
            rt.settings.topology, rt.registry, rt.directory, rt.move_journal, rt.pseudonyms
        )
        report = await comply(mover, Selection(drain="eu-fra-1"), batch_size=100)
        assert [m.state for m in report.unfinished] == ["verified"] * len(ru)
        assert {m.error for m in report.unfinished} == {"shard ru-msk-1 cannot be reached"}
        record = await rt.store.put("ivan-0", "notes", "k0", {"meanwhile": True}, ACTOR)
        assert (record.shard, record.version) == ("eu-fra-1", 2)  # the fence was lifted
        ids = {rt.pseudonyms.subject(s) for s in ru}
    listed = await cli(dep.config, "moves", "list")
    assert listed.stdout.count("shard ru-msk-1 cannot be reached") == len(ru)

    resumed = await cli(dep.config, "moves", "resume")
    assert resumed.exit_code == 0, resumed.stdout
    assert_settled(await views(dep), {p: ("ru-msk-1", 3) for p in ids})
    assert (await cli(dep.config, "moves", "list")).stdout == "no unfinished moves\n"
    async with open_runtime(dep.settings()) as rt:
        assert (await rt.store.get("ivan-0", "notes", "k0")).data == b'{"meanwhile":true}'
