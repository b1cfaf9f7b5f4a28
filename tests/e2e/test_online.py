"""Moves are online: writers hammer the subjects while they move, through a router whose cache
knows nothing of the moves. Every acknowledged write is readable afterwards; a refused write is
a retryable 503 (or, under a new law, 409 until the subject is moved), never a lost one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.comply import Report, Selection, comply
from domicile.shards.moves import Mover
from tests.support.api import Api, start_api
from tests.support.deployment import Deployment
from tests.support.shards import assert_settled, seed, set_accepting, set_policy, views

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]

Acked = dict[tuple[str, str], dict[str, Any]]


@dataclass
class Load:
    acked: Acked = field(default_factory=dict)
    seen: Counter[int | str] = field(default_factory=Counter)
    pauses: list[float] = field(default_factory=list)  # first 503 to success, per write
    # Every answer per record, so a count that does not add up shows what the writer was told.
    answers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    everyone: asyncio.Event = field(default_factory=asyncio.Event)  # each subject acked a write


async def writer(api: Api, subjects: list[str], n: int, stop: asyncio.Event, load: Load) -> None:
    """Writes its own key of every subject in turn, retrying 503s; records what was acked and
    the longest pause met (first 503 to success)."""
    key, round_ = f"w{n}", 0
    while not stop.is_set():
        round_ += 1
        for subject in subjects:
            value = {"writer": n, "round": round_}
            refused_at = None
            while True:
                response = await api.put(subject, "hammer", key, value)
                load.seen[response.status_code] += 1
                answer = str(response.status_code)
                if response.status_code != 200:
                    answer += " " + response.json()["error"]["code"]
                load.answers.setdefault((subject, key), []).append(answer)
                if response.status_code == 200:
                    load.acked[(subject, key)] = value
                    if len({s for s, _ in load.acked}) == len(subjects):
                        load.everyone.set()
                    if refused_at is not None:
                        load.pauses.append(time.monotonic() - refused_at)
                    break
                code = response.json()["error"]["code"]
                if response.status_code == 409 and code == "relocation_required":
                    break  # not moved yet: come back next round
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"]
                refused_at = refused_at or time.monotonic()
                if stop.is_set() and time.monotonic() - refused_at > 5:
                    raise AssertionError(f"{subject} stayed unwritable: {response.text}")
                await asyncio.sleep(0.002)


async def reader(api: Api, subjects: list[str], stop: asyncio.Event, load: Load) -> None:
    while not stop.is_set():
        for subject in subjects:
            response = await api.request("GET", f"/v1/subjects/{subject}/records/notes/k0")
            load.seen[f"read {response.status_code}"] += 1
            assert response.status_code == 200, response.text


async def hammer_while(
    dep: Deployment, subjects: list[str], selection: Selection
) -> tuple[Load, Report]:
    load = Load()
    stop = asyncio.Event()
    async for api in start_api(dep.settings()):
        tasks = [asyncio.create_task(writer(api, subjects, n, stop, load)) for n in range(3)]
        tasks.append(asyncio.create_task(reader(api, subjects, stop, load)))
        await asyncio.sleep(0.2)
        async with open_runtime(dep.settings()) as rt:
            mover = Mover(
                rt.settings.topology, rt.registry, rt.directory, rt.move_journal, rt.pseudonyms
            )
            report = await comply(mover, selection, parallel=2, batch_size=2)
        # Until every subject took a write at its new home.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.everyone.wait(), timeout=10)
        stop.set()
        await asyncio.gather(*tasks)
        for (subject, key), value in load.acked.items():
            response = await api.request("GET", f"/v1/subjects/{subject}/records/hammer/{key}")
            assert response.status_code == 200
            assert response.json()["data"] == value, (subject, key)
            assert response.headers["X-Domicile-Shard"] == "ru-msk-1"
    return load, report


async def settled_on_russia(dep: Deployment, subjects: list[str], seeded: int, load: Load) -> None:
    acked = load.acked
    async with open_runtime(dep.settings(), prepare=False) as rt:
        expected = {
            rt.pseudonyms.subject(s): ("ru-msk-1", seeded + sum(1 for (t, _) in acked if t == s))
            for s in subjects
        }
    try:
        assert_settled(await views(dep), expected)
    except AssertionError as failure:
        unacked = {k: v for k, v in load.answers.items() if k not in acked}
        raise AssertionError(f"{failure}\nanswers to writes never acked: {unacked}") from None


async def test_writes_during_a_drain_are_never_lost(deployment: Deployment) -> None:
    set_policy(deployment.config, "RU", ["ru-msk", "eu-fra"])
    subjects = [f"sasha-{i}" for i in range(16)]
    await seed(deployment.settings(), dict.fromkeys(subjects, "RU"), records=2)
    on_eu = (await views(deployment))["eu-fra-1"].home()
    assert on_eu  # rendezvous hashing put some there
    set_accepting(deployment.config, "eu-fra-1", False)

    load, report = await hammer_while(deployment, subjects, Selection(drain="eu-fra-1"))

    assert report.remaining == 0
    assert sum(report.moved.values()) == len(on_eu)
    assert load.seen[200] > 0
    assert load.seen[409] == 0  # the source stays permitted: only the cutover pauses writes
    assert max(load.pauses, default=0) < 5  # bounded; every refused write landed on retry
    await settled_on_russia(deployment, subjects, 2, load)


async def test_writes_during_comply_are_never_lost(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    dep, ru = law_change
    subjects = sorted(ru)

    load, report = await hammer_while(dep, subjects, Selection())

    assert report.remaining == 0
    assert load.seen[409] == 0  # never refused: a write to a subject still in the EU moves it
    assert {s for s, _ in load.acked} == set(subjects)
    await settled_on_russia(dep, subjects, 3, load)
