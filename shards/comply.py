"""``comply`` and ``drain``: find every subject placed where it may no longer be, and move it.

Misplaced subjects are found in the catalog (jurisdiction and shard of every placement), never by
scanning shards. Each goes to the shard a new subject of its jurisdiction would get
(``placement.choose_home``, the drained shard excluded), so a rerun plans the same moves.
Moves run in batches sharing (jurisdiction, source, target), ``parallel`` batches at a time.

A run first resumes moves that a dead run left unfinished, so a rerun after Ctrl-C or kill -9
never redoes a finished subject and never leaves one half-moved. Two runs at once cannot move a
subject twice: planning a move takes the subject's slot in the journal (one unfinished move per
subject) and checks its placement version; a subject another run is moving is left to it, and
this run waits for that run to finish before it reports.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from domicile.shards.directory import Directory
from domicile.shards.errors import NoPermittedRegion
from domicile.shards.move_journal import MovePlan, MoveRow
from domicile.shards.moves import BatchOutcome, Mover, owner_is_dead
from domicile.shards.placement import choose_home
from domicile.shards.placements import Placement
from domicile.shards.policy import Topology


@dataclass(frozen=True)
class Selection:
    """Which placements are misplaced: those outside their rule's target regions (comply, for
    a rule in effect or scheduled), or every subject of a shard being drained."""

    jurisdiction: str | None = None
    drain: str | None = None

    def misplaced(self, topology: Topology, jurisdiction: str, shard: str) -> bool:
        if self.jurisdiction is not None and jurisdiction != self.jurisdiction:
            return False
        if self.drain is not None:
            return shard == self.drain
        return not topology.is_target(jurisdiction, shard)

    def destination(self, topology: Topology, placement: Placement) -> str | None:
        """Where a misplaced subject goes; None when no permitted shard will take it (or its
        shard is no longer configured, so it cannot be read)."""
        if placement.shard not in topology.shards:
            return None
        try:
            home = choose_home(
                topology, placement.jurisdiction, placement.pseudonym, excluding=self.drain
            )
        except NoPermittedRegion:
            return None
        return home.name


Pair = tuple[str, str, str | None]  # (jurisdiction, from shard, to shard or None: nowhere)


async def misplaced_pages(
    directory: Directory, topology: Topology, selection: Selection, *, page: int = 1000
) -> AsyncIterator[list[tuple[Placement, str | None]]]:
    """Misplaced placements with their destinations, a page at a time."""
    for jurisdiction, shard in sorted(await directory.placement_counts()):
        if not selection.misplaced(topology, jurisdiction, shard):
            continue
        after = ""
        while True:
            found = await directory.placements_on(jurisdiction, shard, after=after, limit=page)
            if not found:
                break
            yield [(p, selection.destination(topology, p)) for p in found]
            after = found[-1].pseudonym


async def survey(directory: Directory, topology: Topology, selection: Selection) -> Counter[Pair]:
    """Misplaced subjects per (jurisdiction, from shard, to shard): the dry run."""
    pairs: Counter[Pair] = Counter()
    async for found in misplaced_pages(directory, topology, selection):
        pairs.update((p.jurisdiction, p.shard, to) for p, to in found)
    return pairs


async def count_misplaced(directory: Directory, topology: Topology, selection: Selection) -> int:
    counts = await directory.placement_counts()
    return sum(n for (j, shard), n in counts.items() if selection.misplaced(topology, j, shard))


async def to_move_per_rule(directory: Directory, topology: Topology) -> dict[str, int]:
    """For each rule with an effective time: how many subjects it governs are outside its
    target regions (``comply`` has them still to move)."""
    timed = {rule.key: 0 for rule in topology.scheduled_rules}
    for (jurisdiction, shard), n in (await directory.placement_counts()).items():
        rule = topology.rule_for(jurisdiction)
        if rule is not None and rule.key in timed and not topology.is_target(jurisdiction, shard):
            timed[rule.key] += n
    return timed


class ProgressSink(Protocol):
    def started(self, total: int) -> None: ...
    def advanced(self, subjects: int, records: int) -> None: ...


@dataclass
class Report:
    moved: Counter[Pair] = field(default_factory=Counter)
    records: Counter[Pair] = field(default_factory=Counter)
    failed: list[MoveRow] = field(default_factory=list)
    unfinished: list[MoveRow] = field(default_factory=list)
    unplaceable: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The write pause each moved subject saw, in seconds.
    pauses: list[float] = field(default_factory=list)
    remaining: int = 0

    def absorb(self, outcome: BatchOutcome) -> None:
        for m in outcome.done:
            pair = (m.jurisdiction, m.from_shard, m.to_shard)
            self.moved[pair] += 1
            self.records[pair] += m.records or 0
        self.failed += outcome.failed
        self.unfinished += outcome.unfinished
        self.pauses += outcome.pauses


class _Pool:
    """At most ``size`` batches in flight; tasks are created only when a slot is free."""

    def __init__(self, size: int) -> None:
        self._slots = asyncio.Semaphore(max(1, size))
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(work())
        task.add_done_callback(lambda _: self._slots.release())
        self._tasks.add(task)

    async def drain(self) -> None:
        tasks, self._tasks = self._tasks, set()
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def batches(moves: Iterable[MoveRow], size: int) -> list[list[MoveRow]]:
    groups: dict[tuple[str, str, str], list[MoveRow]] = defaultdict(list)
    for m in moves:
        groups[(m.jurisdiction, m.from_shard, m.to_shard)].append(m)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


async def comply(
    mover: Mover,
    selection: Selection,
    *,
    parallel: int = 2,
    batch_size: int = 1000,
    progress: ProgressSink | None = None,
    reason: str = "comply",
    poll: float = 0.2,
) -> Report:
    """Move every misplaced subject; returns what was done and how many remain misplaced."""
    directory, topology = mover.directory, mover.topology
    report = Report()
    if progress is not None:
        progress.started(await count_misplaced(directory, topology, selection))
    given_up: set[str] = set()  # subjects whose move failed in this run: not retried

    async def run(batch: Sequence[MoveRow]) -> None:
        outcome = await mover.run(batch)
        report.absorb(outcome)
        given_up.update(m.pseudonym for m in (*outcome.failed, *outcome.unfinished))
        if progress is not None:
            progress.advanced(len(outcome.done), outcome.records)

    async def plan_and_run(plans: Sequence[MovePlan]) -> None:
        await run(await mover.plan(plans, reason))

    while True:
        pool = _Pool(parallel)
        claimed = [
            m
            for m in await mover.claim(jurisdiction=selection.jurisdiction)
            if selection.drain is None or m.from_shard == selection.drain
        ]
        for batch in batches(claimed, batch_size):
            await pool.submit(partial(run, batch))
        report.unplaceable.clear()
        async for found in misplaced_pages(directory, topology, selection):
            plans: dict[tuple[str, str, str], list[MovePlan]] = defaultdict(list)
            for p, to in found:
                if to is None:
                    report.unplaceable[(p.jurisdiction, p.shard)] += 1
                elif p.pseudonym not in given_up:
                    plans[(p.jurisdiction, p.shard, to)].append(
                        MovePlan(p.pseudonym, p.jurisdiction, p.shard, to, p.version)
                    )
            for group in plans.values():
                for i in range(0, len(group), batch_size):
                    chunk = group[i : i + batch_size]
                    await pool.submit(partial(plan_and_run, chunk))
        await pool.drain()
        report.remaining = await count_misplaced(directory, topology, selection)
        movable = report.remaining - sum(report.unplaceable.values())
        if movable <= 0 or not await _others_busy(mover):
            return report
        # Another run holds some of these subjects: wait for it, then sweep again (which also
        # picks up its moves if it dies meanwhile). It is another process: poll the journal.
        while True:
            await asyncio.sleep(poll)
            if not await _others_busy(mover):
                break


async def _others_busy(mover: Mover) -> bool:
    now = datetime.now(UTC)
    return any(
        m.held(now) and m.owner != mover.owner and not owner_is_dead(m.owner or "")
        for m in await mover.journal.latest(unfinished_only=True, limit=1000)
    )
