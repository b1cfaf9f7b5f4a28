"""Relocation on the first write (placement rule 8): a write to a subject whose home the rule
in effect no longer permits first moves the subject to a permitted shard (a move like any
other, journaled and audited, with reason ``write``), then applies there. The caller sees the
pause, not a refusal.

Concurrent writes to one subject share its relocation; relocations in one process are bounded,
so a burst of writes cannot starve ``comply`` or the shards. A move that cannot be made now
answers 503 with ``Retry-After`` (``RelocationDeferred``); the move stays in the journal and the
next write, or ``comply``, finishes it: the journal never holds two moves of one subject.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from domicile.shards.errors import (
    AlreadyPlaced,
    MoveInProgress,
    RelocationDeferred,
    SubjectMoving,
)
from domicile.shards.move_journal import MoveJournal
from domicile.shards.states import MoveState

#: Concurrent relocations per process.
RELOCATIONS = 4
#: How long a write waits for another run's move of its subject (comply's, another router's).
OTHERS_MOVE_WAIT = 5.0
REASON = "write"

#: Moves one subject (by id) to a shard now and returns the move's final state and error.
MoveNow = Callable[[str, str], Awaitable[tuple[MoveState, str | None]]]


class Relocator:
    def __init__(
        self, journal: MoveJournal, move_now: MoveNow, *, concurrency: int = RELOCATIONS
    ) -> None:
        self._journal = journal
        self._move_now = move_now
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Told each relocation's duration (seconds): the pause its writes met.
        self.observe: Callable[[float], None] | None = None

    async def relocate(self, subject_id: str, pseudonym: str, target: str) -> None:
        """Return once the subject is home on a permitted shard (``target``, or the target of
        a move already under way); raise a retryable error when that cannot be done now."""
        task = self._running.get(pseudonym)
        if task is None:
            task = asyncio.create_task(self._relocate(subject_id, pseudonym, target))
            self._running[pseudonym] = task
            task.add_done_callback(lambda _: self._running.pop(pseudonym, None))
        await asyncio.shield(task)  # one caller giving up must not cancel the others' move

    async def _relocate(self, subject_id: str, pseudonym: str, target: str) -> None:
        started = time.monotonic()
        async with self._slots:
            pending = await self._journal.unfinished_of(pseudonym)
            if pending is not None:
                target = pending.to_shard  # finish the move under way rather than plan another
            try:
                state, error = await self._move_now(subject_id, target)
            except MoveInProgress:
                await self._await_others(pseudonym)
                return
            except AlreadyPlaced:
                # Another run (comply, another router) switched it there after this write read
                # the catalog: the write goes on at the new home.
                state, error = MoveState.DONE, None
        if state not in (MoveState.SWITCHED, MoveState.DONE):
            raise RelocationDeferred(target, error)
        if self.observe is not None:
            self.observe(time.monotonic() - started)

    async def _await_others(self, pseudonym: str) -> None:
        """Until the other run's move of the subject has switched (or ended): the write goes on
        at the new home while that run still purges the old one."""
        deadline = time.monotonic() + OTHERS_MOVE_WAIT
        while (pending := await self._journal.unfinished_of(pseudonym)) is not None:
            if pending.state.switched:
                return
            if time.monotonic() > deadline:
                raise SubjectMoving()
            await asyncio.sleep(0.02)  # a write waits on it: poll at a fraction of a pause
