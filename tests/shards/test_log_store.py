"""The integrator and the stored tree: indices in commit order, exactly once, however many
integrators race; proofs from stored nodes match a tree recomputed from the leaves."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime

import pytest

from domicile.audit.events import SUBJECT_ERASED, Actor, make_leaf
from domicile.audit.merkle import CompactRange, leaf_hash, verify_consistency, verify_inclusion
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.auditlog import Change, append_entries, site_of
from tests.support.deployment import Deployment, query_shard

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]

ACTOR = Actor(key_id="test")


async def leaves_by_index(dep: Deployment, shard: str) -> list[bytes]:
    rows = await query_shard(dep, shard, "SELECT idx, leaf FROM audit_entries ORDER BY idx")
    assert [r[0] for r in rows] == list(range(len(rows)))
    return [bytes(r[1]) for r in rows]


async def test_append_entries_commits_a_batch_with_its_transaction(
    runtime: Runtime, deployment: Deployment
) -> None:
    shard = runtime.registry["ru-msk-1"]
    log = runtime.audit.log("ru-msk-1")
    assert await log.integrate() == 1  # the log's policy.changed entry, from the start-up
    changes = [Change(SUBJECT_ERASED, f"p{n}", "RU", {"records": n}) for n in range(5)]

    async def failing_change() -> None:
        async with shard.write() as conn:
            assert await append_entries(conn, shard, ACTOR, changes) == 5
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with shard.write() as conn:
        assert await append_entries(conn, shard, ACTOR, []) == 0
    assert await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM audit_pending") == [(0,)]

    async with shard.write() as conn:
        await append_entries(conn, shard, ACTOR, changes)
    assert await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM audit_pending") == [(5,)]
    assert await log.integrate() == 6
    assert await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM audit_pending") == [(0,)]
    entries = await log.entries(1, 6)
    assert [(e.index, e.leaf) for e in entries] == await log.leaves(1, 6)
    events = [json.loads(e.leaf) for e in entries]
    assert [(e["event"], e["subject"], e["records"], e["actor"]) for e in events] == [
        (SUBJECT_ERASED, f"p{n}", n, "test") for n in range(5)
    ]
    assert [e.leaf for e in entries] == [
        make_leaf(
            site_of(shard),
            SUBJECT_ERASED,
            ACTOR,
            subject=f"p{n}",
            jurisdiction="RU",
            time=datetime.fromisoformat(event["time"]),
            records=n,
        )
        for n, event in enumerate(events)
    ]
    subjects = await query_shard(
        deployment, "ru-msk-1", "SELECT subject FROM audit_entries WHERE subject IS NOT NULL"
    )
    assert sorted(r[0] for r in subjects) == [f"p{n}" for n in range(5)]
    assert [e.index for e in await log.subject_entries("p3", 6)] == [4]


async def test_integration_and_proofs_from_stored_nodes(
    runtime: Runtime, deployment: Deployment
) -> None:
    await runtime.store.register("ivan", "RU", ACTOR)
    for n in range(12):
        await runtime.store.put("ivan", "notes", f"n{n}", {"n": n}, ACTOR)
    pending = await query_shard(deployment, "ru-msk-1", "SELECT id FROM audit_pending ORDER BY id")
    assert len(pending) == 14  # with the log's policy.changed entry from the start-up
    assert not await query_shard(deployment, "ru-msk-1", "SELECT id FROM audit_entries")
    ru = runtime.audit.log("ru-msk-1")
    assert await ru.size() == 0
    assert await ru.integrate(batch=5) == 14  # several batches, one index sequence

    # Indices follow commit (id) order; entries keep their ids and leave the queue.
    rows = await query_shard(
        deployment, "ru-msk-1", "SELECT id, idx FROM audit_entries ORDER BY id"
    )
    assert rows == [(row_id, n) for n, (row_id,) in enumerate(pending)]
    assert not await query_shard(deployment, "ru-msk-1", "SELECT id FROM audit_pending")

    leaves = await leaves_by_index(deployment, "ru-msk-1")
    tree = CompactRange()
    roots = [tree.root()]
    for leaf in leaves:
        tree.append(leaf_hash(leaf))
        roots.append(tree.root())
    for size in range(1, 15):
        assert await ru.root(size) == roots[size]
        for index in range(size):
            proof = await ru.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, roots[size])
    for first, second in itertools.combinations_with_replacement(range(1, 15), 2):
        proof = await ru.consistency_proof(first, second)
        verify_consistency(first, second, proof, roots[first], roots[second])


async def test_racing_integrators_assign_each_index_once(deployment: Deployment) -> None:
    """Two runtimes (as two router processes) integrate while writers append."""
    settings = deployment.settings()
    async with open_runtime(settings) as one, open_runtime(settings) as two:
        await one.store.register("ivan", "RU", ACTOR)
        writing = True

        async def write(worker: int) -> None:
            for n in range(15):
                await one.store.put("ivan", f"w{worker}", f"n{n}", {"n": n}, ACTOR)

        async def integrate(runtime: Runtime) -> None:
            while writing:
                await runtime.audit.log("ru-msk-1").integrate(batch=3)
                await asyncio.sleep(0)

        integrators = [asyncio.create_task(integrate(rt)) for rt in (one, two, one, two)]
        await asyncio.gather(*(write(w) for w in range(4)))
        writing = False
        await asyncio.gather(*integrators)
        checkpoint = await two.audit.checkpoint("ru-msk-1")

    assert checkpoint.size == 62  # with the log's policy.changed entry from the start-up
    leaves = await leaves_by_index(deployment, "ru-msk-1")
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf_hash(leaf))
    assert tree.root() == checkpoint.root
    nodes = await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM audit_nodes")
    assert nodes == [(62 * 2 - (62).bit_count(),)]


async def test_checkpoints_are_kept_and_reused(runtime: Runtime) -> None:
    await runtime.store.register("ivan", "RU", ACTOR)
    first = await runtime.audit.checkpoint("ru-msk-1")
    assert first.size == 2  # the log's policy.changed entry, then the registration
    assert await runtime.audit.checkpoint("ru-msk-1") == first  # nothing new: same note
    await runtime.store.put("ivan", "notes", "a", {}, ACTOR)
    second = await runtime.audit.checkpoint("ru-msk-1")
    assert second.size == 3
    stored = await runtime.audit.log("ru-msk-1").checkpoints()
    assert [c.size for c in stored] == [2, 3]
    assert stored[1].note == second.note
