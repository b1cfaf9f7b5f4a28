"""Bulk import of an existing user base (``domicile import``): subjects and their records, placed
by the policy as registrations are, written to each shard a batch at a time with their audit
entries.

Each batch follows registration's crash-safe order across the two databases: the catalog
entries are reserved ``pending`` (one transaction), each shard's share is written with its
entries in one transaction (``bulk_import.land``), then the entries are activated (one
statement). A run killed anywhere leaves pending entries, invisible to every request, which the
next run (or a registration) completes; a subject the shard already holds gets only the records
whose content changed, so a re-run of the same input adds no row, no version and no entry.

Lines are parsed and prepared (pseudonyms, digests, audit leaves) while earlier batches are
being written, ``WRITERS`` at a time, so Python's work and one batch's catalog statements
overlap another's shard transactions; a batch holding a subject of one still landing waits for
it. At most ``QUEUED`` batches wait, so memory stays flat whatever the input's size.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from domicile.audit import events
from domicile.audit.events import Actor, LeafMaker
from domicile.shards import bulk_import
from domicile.shards.auditlog import shard_leaves
from domicile.shards.bulk_import import Arrival, Incoming, Landed
from domicile.shards.directory import Directory
from domicile.shards.errors import (
    DomicileError,
    InvalidInput,
    JurisdictionConflict,
    PlacementNotPermitted,
    ResidencyGuardViolation,
    SubjectMoving,
)
from domicile.shards.import_lines import SubjectLine, parse_line
from domicile.shards.placement import choose_home
from domicile.shards.placements import Placement
from domicile.shards.policy import Topology
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.relocation import Relocator
from domicile.shards.states import PlacementState
from domicile.shards.store import content_digest

#: Subjects per batch by default; a batch also closes at ``BATCH_RECORDS`` records.
BATCH_SUBJECTS = 1000
BATCH_RECORDS = 20_000
#: Prepared batches waiting for a writer.
QUEUED = 2
#: Batches written at once: one's catalog statements overlap the other's shard transactions.
WRITERS = 2
#: Lines prepared between two turns of the writer, which waits for the databases meanwhile.
YIELD_EVERY = 32

#: Numbered lines of the input (1-based, each with its line ending), a chunk at a time.
Lines = AsyncIterator[Sequence[tuple[int, bytes]]]


@dataclass(frozen=True)
class Rejection:
    """A line left out: its number, the error's code and a message that quotes no content."""

    line: int
    code: str
    message: str


class Progress(Protocol):
    def advanced(self, *, consumed: int, subjects: int, records: int) -> None:
        """A batch is done: ``consumed`` bytes of input, ``subjects`` and ``records`` in."""


@dataclass
class Tally:
    """What a run did."""

    lines: int = 0
    subjects: int = 0  # lines whose subject is in place with all its records
    registered: int = 0  # of those, subjects this run registered
    written: int = 0  # records given a new version
    unchanged: int = 0  # records already stored with the same content
    rejected: Counter[str] = field(default_factory=Counter)  # lines by code

    @property
    def records(self) -> int:
        """Records of the subjects in place."""
        return self.written + self.unchanged


@dataclass(frozen=True)
class _Subject:
    line: int
    lookups: Mapping[str, str]
    pseudonym: str
    arrival: Arrival
    shard: str  # the shard ``arrival``'s leaves were made for


class _Leaves:
    """A batch's leaf makers, per shard: its entries share their time."""

    def __init__(self, actor: Actor) -> None:
        self.time = datetime.now(UTC)
        self._actor = actor
        self._makers: dict[str, tuple[LeafMaker, LeafMaker]] = {}

    def of(self, shard: Shard) -> tuple[LeafMaker, LeafMaker]:
        """``subject.registered`` and ``record.put`` (version 1) entries on ``shard``."""
        makers = self._makers.get(shard.name)
        if makers is None:
            makers = self._makers[shard.name] = (
                shard_leaves(shard, events.SUBJECT_REGISTERED, self._actor, time=self.time),
                shard_leaves(shard, events.RECORD_PUT, self._actor, time=self.time, version=1),
            )
        return makers


@dataclass
class _Batch:
    leaves: _Leaves
    subjects: list[_Subject] = field(default_factory=list)
    records: int = 0
    consumed: int = 0  # input bytes, rejected and blank lines included
    pseudonyms: set[str] = field(default_factory=set)


class Importer:
    def __init__(
        self,
        topology: Topology,
        registry: ShardRegistry,
        directory: Directory,
        pseudonyms: Pseudonymizer,
        *,
        actor: Actor,
        max_record_bytes: int,
        relocator: Relocator | None = None,
    ) -> None:
        self.topology = topology
        self.registry = registry
        self.directory = directory
        self.pseudonyms = pseudonyms
        self.actor = actor
        self.max_record_bytes = max_record_bytes
        #: Moves an already registered subject the policy in effect no longer permits where it
        #: is before its records are written (placement rule 8); None: such a line is refused.
        self.relocator = relocator

    async def run(
        self,
        lines: Lines,
        *,
        reject: Callable[[Rejection], None],
        progress: Progress | None = None,
        batch_subjects: int = BATCH_SUBJECTS,
        tally: Tally | None = None,
    ) -> Tally:
        """Import every line; each line left out is passed to ``reject``. A shard or the
        catalog failing stops the run, with what it did so far in place and counted in
        ``tally``: run it again."""
        tally = Tally() if tally is None else tally
        queue: asyncio.Queue[_Batch | None] = asyncio.Queue(QUEUED)

        def refuse(line: int, exc: DomicileError) -> None:
            tally.rejected[exc.code] += 1
            reject(Rejection(line, exc.code, exc.message))

        async def produce() -> None:
            batch = _Batch(_Leaves(self.actor))
            async for chunk in lines:
                for number, raw in chunk:
                    subject = None
                    if raw.strip():  # a blank line (a trailing one, say) is no subject
                        tally.lines += 1
                        subject = self._prepare(number, raw, batch.leaves, refuse)
                    if subject is not None and (
                        subject.pseudonym in batch.pseudonyms
                        or len(batch.subjects) >= batch_subjects
                        or batch.records >= BATCH_RECORDS
                    ):
                        # A subject twice in one batch: the later line lands after the earlier.
                        await queue.put(batch)
                        batch = _Batch(_Leaves(self.actor))
                    batch.consumed += len(raw)
                    if subject is not None:
                        batch.subjects.append(subject)
                        batch.pseudonyms.add(subject.pseudonym)
                        batch.records += len(subject.arrival.records)
                    if number % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the writer take its answers as they come
            await queue.put(batch)
            for _ in range(WRITERS):
                await queue.put(None)

        # The batch landing each subject now: a later batch holding one of them waits for it.
        landing: dict[str, asyncio.Event] = {}

        async def consume() -> None:
            while (batch := await queue.get()) is not None:
                earlier = {id(e): e for p in batch.pseudonyms if (e := landing.get(p))}
                done = asyncio.Event()
                landing.update(dict.fromkeys(batch.pseudonyms, done))
                for event in earlier.values():
                    await event.wait()
                try:
                    subjects, records = await self._land_batch(batch, tally, refuse)
                finally:
                    for p in batch.pseudonyms:
                        if landing.get(p) is done:
                            del landing[p]
                    done.set()
                if progress is not None:
                    progress.advanced(consumed=batch.consumed, subjects=subjects, records=records)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                for _ in range(WRITERS):
                    group.create_task(consume())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure; the other task stopped
        return tally

    # -- preparing a line --------------------------------------------------------------------

    def _prepare(
        self,
        number: int,
        raw: bytes,
        leaves: _Leaves,
        refuse: Callable[[int, DomicileError], None],
    ) -> _Subject | None:
        try:
            parsed = parse_line(raw, max_record_bytes=self.max_record_bytes)
            pseudonym = self.pseudonyms.subject(parsed.subject_id)
            home = choose_home(self.topology, parsed.jurisdiction, pseudonym)
        except DomicileError as exc:
            refuse(number, exc)
            return None
        shard = self.registry[home.name]
        arrival = self._arrival(parsed, pseudonym, shard, leaves)
        return _Subject(number, parsed.lookups, pseudonym, arrival, shard.name)

    def _arrival(
        self, parsed: SubjectLine, pseudonym: str, shard: Shard, leaves: _Leaves
    ) -> Arrival:
        """The subject's rows and entries as they land on ``shard``."""
        registered, put = leaves.of(shard)
        jurisdiction = parsed.jurisdiction
        incoming = []
        for record in parsed.records:
            digest = content_digest(record.stored)
            record_pseudonym = self.pseudonyms.record(
                parsed.subject_id, record.collection, record.key
            )
            leaf = put(
                subject=pseudonym,
                jurisdiction=jurisdiction,
                record=record_pseudonym,
                content_sha256=digest,
            )
            incoming.append(
                Incoming(
                    record.collection,
                    record.key,
                    record.stored.decode(),
                    digest,
                    record_pseudonym,
                    _sized(leaf),
                )
            )
        return Arrival(
            pseudonym,
            parsed.subject_id,
            jurisdiction,
            _sized(registered(subject=pseudonym, jurisdiction=jurisdiction)),
            tuple(incoming),
            leaves.time,
        )

    @staticmethod
    def _moved(arrival: Arrival, shard: Shard, leaves: _Leaves) -> Arrival:
        """``arrival`` with its leaves made for ``shard`` (the catalog placed it there)."""
        registered, put = leaves.of(shard)
        p, jurisdiction = arrival.pseudonym, arrival.jurisdiction
        return replace(
            arrival,
            registered=_sized(registered(subject=p, jurisdiction=jurisdiction)),
            records=tuple(
                r._replace(
                    leaf=_sized(
                        put(
                            subject=p,
                            jurisdiction=jurisdiction,
                            record=r.pseudonym,
                            content_sha256=r.content_sha256,
                        )
                    )
                )
                for r in arrival.records
            ),
        )

    # -- landing a batch ---------------------------------------------------------------------

    async def _land_batch(
        self, batch: _Batch, tally: Tally, refuse: Callable[[int, DomicileError], None]
    ) -> tuple[int, int]:
        """Land a batch; returns its subjects and records now in place."""
        subjects = self._without_lookups(batch.subjects, refuse)
        # Reserved pending, unless an entry exists: from an earlier attempt, or a registration.
        entries = await self.directory.reserve_many(
            [(s.pseudonym, s.arrival.jurisdiction, s.shard) for s in subjects]
        )
        placed: dict[str, Placement] = {}
        for s in subjects:
            try:
                placed[s.pseudonym] = await self._admitted(s, entries[s.pseudonym])
            except DomicileError as exc:
                refuse(s.line, exc)

        by_shard: dict[str, list[_Subject]] = defaultdict(list)
        for s in subjects:
            if s.pseudonym in placed:
                by_shard[placed[s.pseudonym].shard].append(s)
        names = list(by_shard)
        results = await asyncio.gather(
            *(self._land_on(self.registry[name], by_shard[name], batch.leaves) for name in names),
            return_exceptions=True,
        )
        outcomes: dict[str, Landed | DomicileError] = {}
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                outcomes.update(result)
        pending = [
            p
            for p, outcome in outcomes.items()
            if isinstance(outcome, Landed) and placed[p].state == PlacementState.PENDING
        ]
        await self.directory.activate_many(pending)
        landed = records = 0
        for s in subjects:
            outcome = outcomes.get(s.pseudonym)
            if isinstance(outcome, DomicileError):
                refuse(s.line, outcome)
            elif outcome is not None:
                landed += 1
                records += outcome.written + outcome.unchanged
                tally.registered += outcome.new
                tally.written += outcome.written
                tally.unchanged += outcome.unchanged
        tally.subjects += landed
        if failure is not None:
            raise failure
        return landed, records

    def _without_lookups(
        self, subjects: list[_Subject], refuse: Callable[[int, DomicileError], None]
    ) -> list[_Subject]:
        # LOOKUPS PLACEHOLDER, to be replaced when branch `lookups` is merged. Lookup keys
        # cannot be set yet, so a line that sets any is refused whole, before anything of it
        # is reserved or written. Once merged: claim each subject's values here, all or
        # nothing per subject as a registration with lookups does (a value held by another
        # subject refuses the line `lookup_taken`), and write them with the subject's rows.
        kept = []
        for s in subjects:
            if s.lookups:
                refuse(
                    s.line,
                    InvalidInput(
                        "lookups_unsupported", "lookup keys cannot be imported by this release"
                    ),
                )
            else:
                kept.append(s)
        return kept

    async def _admitted(self, subject: _Subject, existing: Placement) -> Placement:
        """Where a subject goes: the shard of its pending entry, or the home of a registered
        subject, as a write to it finds it (moved first when the rule in effect no longer
        permits it there)."""
        if existing.jurisdiction != subject.arrival.jurisdiction:
            raise JurisdictionConflict(existing.jurisdiction, subject.arrival.jurisdiction)
        if existing.state == PlacementState.MOVING:
            raise SubjectMoving()
        if existing.state == PlacementState.PENDING or self.topology.is_permitted(
            existing.jurisdiction, existing.shard
        ):
            return existing
        if self.relocator is None:
            raise PlacementNotPermitted(existing.jurisdiction, existing.shard)
        target = choose_home(self.topology, existing.jurisdiction, subject.pseudonym)
        await self.relocator.relocate(subject.arrival.subject_id, subject.pseudonym, target.name)
        moved = await self.directory.read(subject.pseudonym)
        if moved is None or moved.state != PlacementState.ACTIVE:
            raise SubjectMoving()
        return moved

    async def _land_on(
        self, shard: Shard, subjects: Sequence[_Subject], leaves: _Leaves
    ) -> dict[str, Landed | DomicileError]:
        arrivals = [
            s.arrival if s.shard == shard.name else self._moved(s.arrival, shard, leaves)
            for s in subjects
        ]
        try:
            async with shard.write() as conn:
                return await bulk_import.land(conn, shard, arrivals, self.actor)
        except ResidencyGuardViolation as refused:
            if len(subjects) == 1:
                return {subjects[0].pseudonym: refused}
        # The shard's guard refused a row of the batch: land its subjects one at a time, so
        # only those it refuses are left out.
        outcomes: dict[str, Landed | DomicileError] = {}
        for s in subjects:
            outcomes.update(await self._land_on(shard, [s], leaves))
        return outcomes


def _sized(leaf: bytes) -> bytes:
    """A copy of its own size: orjson's bytes keep a 4 KiB buffer, of which a batch of 10,000
    records would hold 80 MiB."""
    return bytes(memoryview(leaf))
