"""Bulk import of an existing user base (``domicile import``): subjects and their records, placed
by the policy as registrations are, written to each shard a batch at a time with their audit
entries, with their lookup keys as a registration sets them.

Each batch follows registration's crash-safe order across the two databases: the lookup values
are claimed (one statement, unless another subject holds one), the catalog entries are reserved
``pending`` (one transaction), each shard's share is written with its entries in one
transaction (``bulk_import.land``, then the lookup keys with their ``lookup.set`` entries), then
the entries and the claims are activated (a statement each). A run killed anywhere leaves
pending entries and claims, invisible to every request, which the next run (or a registration)
completes; a subject the shard already holds gets only the records whose content changed and the
lookup keys that differ, so a re-run of the same input adds no row, no version and no entry.

Lines are parsed and prepared (pseudonyms, digests, audit leaves) while earlier batches are
being written, ``WRITERS`` at a time, so Python's work and one batch's catalog statements
overlap another's shard transactions; a batch holding a subject or a lookup value of one still
landing waits for it, so lines land, and claim values, in their order. At most ``QUEUED``
batches wait, so memory stays flat whatever the input's size.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit import events
from domicile.audit.events import Actor, LeafMaker
from domicile.shards import bulk_import
from domicile.shards.auditlog import shard_leaves
from domicile.shards.bulk_import import Arrival, Incoming, Landed
from domicile.shards.errors import (
    DomicileError,
    InvalidInput,
    JurisdictionConflict,
    LookupTaken,
    PlacementNotPermitted,
    ResidencyGuardViolation,
    SubjectMoving,
)
from domicile.shards.import_lines import SubjectLine, parse_line
from domicile.shards.lookup_keys import LookupValue
from domicile.shards.lookup_rows import add_lookups, write_lookups
from domicile.shards.placement import choose_home
from domicile.shards.placements import Placement
from domicile.shards.registry import Shard
from domicile.shards.relocation import Relocator
from domicile.shards.states import PlacementState
from domicile.shards.store import RecordStore, content_digest

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
#: What two batches landing at once must not share: a subject's pseudonym, or a lookup value's
#: (kind, blind).
_Key = str | tuple[str, str]


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
    lookups: tuple[LookupValue, ...]
    pseudonym: str
    arrival: Arrival
    shard: str  # the shard ``arrival``'s leaves were made for

    @property
    def keys(self) -> list[_Key]:
        return [self.pseudonym, *((v.kind, v.blind) for v in self.lookups)]


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
    keys: set[_Key] = field(default_factory=set)


class Importer:
    def __init__(
        self,
        store: RecordStore,
        *,
        actor: Actor,
        max_record_bytes: int,
        relocator: Relocator | None = None,
    ) -> None:
        self.store = store
        self.topology = store.topology
        self.registry = store.registry
        self.directory = store.directory
        self.pseudonyms = store.pseudonyms
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
                        not batch.keys.isdisjoint(subject.keys)
                        or len(batch.subjects) >= batch_subjects
                        or batch.records >= BATCH_RECORDS
                    ):
                        # A subject or a lookup value twice in one batch: the later line lands
                        # after the earlier (whose claim, if it lands, refuses the later's).
                        await queue.put(batch)
                        batch = _Batch(_Leaves(self.actor))
                    batch.consumed += len(raw)
                    if subject is not None:
                        batch.subjects.append(subject)
                        batch.keys.update(subject.keys)
                        batch.records += len(subject.arrival.records)
                    if number % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the writer take its answers as they come
            await queue.put(batch)
            for _ in range(WRITERS):
                await queue.put(None)

        # The batch landing each subject and lookup value now: a later batch holding one of them
        # waits for it.
        landing: dict[_Key, asyncio.Event] = {}

        async def consume() -> None:
            while (batch := await queue.get()) is not None:
                earlier = {id(e): e for k in batch.keys if (e := landing.get(k))}
                done = asyncio.Event()
                landing.update(dict.fromkeys(batch.keys, done))
                for event in earlier.values():
                    await event.wait()
                try:
                    subjects, records = await self._land_batch(batch, tally, refuse)
                finally:
                    for k in batch.keys:
                        if landing.get(k) is done:
                            del landing[k]
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
            values = self._lookup_values(parsed)
            pseudonym = self.pseudonyms.subject(parsed.subject_id)
            home = choose_home(self.topology, parsed.jurisdiction, pseudonym)
        except DomicileError as exc:
            refuse(number, exc)
            return None
        shard = self.registry[home.name]
        arrival = self._arrival(parsed, pseudonym, shard, leaves)
        return _Subject(number, values, pseudonym, arrival, shard.name)

    def _lookup_values(self, parsed: SubjectLine) -> tuple[LookupValue, ...]:
        """The line's lookup keys normalised in its jurisdiction, as a registration's are."""
        keys = self.store.lookup_keys
        if not parsed.lookups.keys() <= keys.kinds.keys():
            # Unlike the API's answer, the message names no kind: a kind is the line's content.
            declared = ", ".join(sorted(keys.kinds)) or "none"
            raise InvalidInput(
                "unknown_lookup_kind", f"lookups: a kind is not declared (declared: {declared})"
            )
        return tuple(
            keys.prepare(kind, value, parsed.jurisdiction) for kind, value in parsed.lookups.items()
        )

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
        subjects, claimed = await self._claimed(batch.subjects, refuse)
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
        replaced: list[tuple[str, str, str]] = []
        results = await asyncio.gather(
            *(
                self._land_on(self.registry[name], by_shard[name], batch.leaves, replaced)
                for name in names
            ),
            return_exceptions=True,
        )
        outcomes: dict[str, Landed | DomicileError] = {}
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                outcomes.update(result)
        # A subject that did not land gives up what it claimed, as a failed registration does.
        for s in subjects:
            if not isinstance(outcomes.get(s.pseudonym), Landed) and s.pseudonym in claimed:
                await self.store.lookup_index.release_claims(claimed[s.pseudonym], s.pseudonym)
        pending = [
            p
            for p, outcome in outcomes.items()
            if isinstance(outcome, Landed) and placed[p].state == PlacementState.PENDING
        ]
        await self.directory.activate_many(pending)
        await self._activate_lookups(subjects, placed, outcomes, replaced)
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

    async def _claimed(
        self, subjects: list[_Subject], refuse: Callable[[int, DomicileError], None]
    ) -> tuple[list[_Subject], dict[str, list[tuple[str, str]]]]:
        """Claim the batch's lookup values, all or none per subject as a registration does: a
        subject one of whose values another subject holds is refused ``lookup_taken`` before
        anything of it is reserved or written. Returns the subjects kept and, by pseudonym, the
        (kind, blind) claimed now (released if the subject does not land)."""
        index = self.store.lookup_index
        # Distinct values, as ``claim_many`` needs: a value twice closes the batch before it.
        outcomes = await index.claim_many(
            [(v.kind, v.blind, s.pseudonym) for s in subjects for v in s.lookups],
            self.store.holds_lookup,
        )
        kept: list[_Subject] = []
        claimed: dict[str, list[tuple[str, str]]] = {}
        for s in subjects:
            mine = [outcomes[(v.kind, v.blind)] for v in s.lookups]
            now = [(v.kind, v.blind) for v, o in zip(s.lookups, mine, strict=True) if o is True]
            taken = next((o for o in mine if isinstance(o, LookupTaken)), None)
            if taken is not None:
                await index.release_claims(now, s.pseudonym)
                refuse(s.line, taken)
                continue
            kept.append(s)
            if now:
                claimed[s.pseudonym] = now
        return kept, claimed

    async def _activate_lookups(
        self,
        subjects: Sequence[_Subject],
        placed: Mapping[str, Placement],
        outcomes: dict[str, Landed | DomicileError],
        replaced: Sequence[tuple[str, str, str]],
    ) -> None:
        """Activate the landed subjects' claims once their placements are, as a registration
        does, then release the values their new ones replaced. A subject whose claim was taken
        over meanwhile (held past its lease) has its values removed again and its line refused
        ``lookup_taken`` (``RecordStore.activate_lookups``), as a registration is answered."""
        landed = [
            s for s in subjects if s.lookups and isinstance(outcomes.get(s.pseudonym), Landed)
        ]
        lost = await self.store.lookup_index.activate_many(
            [(v.kind, v.blind, s.pseudonym) for s in landed for v in s.lookups]
        )
        for s in landed:
            if lost.isdisjoint((v.kind, v.blind) for v in s.lookups):
                continue
            shard = self.registry[placed[s.pseudonym].shard]
            try:
                await self.store.activate_lookups(
                    shard, s.pseudonym, s.arrival.jurisdiction, s.lookups, self.actor
                )
            except LookupTaken as taken:
                outcomes[s.pseudonym] = taken
        for pseudonym, kind, blind in replaced:
            if isinstance(outcomes[pseudonym], Landed):
                await self.store.lookup_index.release(pseudonym, kind, keep=blind)

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
        self,
        shard: Shard,
        subjects: Sequence[_Subject],
        leaves: _Leaves,
        replaced: list[tuple[str, str, str]],
    ) -> dict[str, Landed | DomicileError]:
        """Land ``subjects`` on ``shard`` in one transaction; adds to ``replaced`` (pseudonym,
        kind, blind) of each lookup key that replaced another of its kind."""
        arrivals = [
            s.arrival if s.shard == shard.name else self._moved(s.arrival, shard, leaves)
            for s in subjects
        ]
        try:
            async with shard.write() as conn:
                outcomes = await bulk_import.land(conn, shard, arrivals, self.actor)
                changed = await self._write_lookups(conn, shard, subjects, outcomes)
            replaced.extend(changed)
            return outcomes
        except ResidencyGuardViolation as refused:
            if len(subjects) == 1:
                return {subjects[0].pseudonym: refused}
        # The shard's guard refused a row of the batch: land its subjects one at a time, so
        # only those it refuses are left out.
        outcomes = {}
        for s in subjects:
            outcomes.update(await self._land_on(shard, [s], leaves, replaced))
        return outcomes

    async def _write_lookups(
        self,
        conn: AsyncConnection,
        shard: Shard,
        subjects: Sequence[_Subject],
        outcomes: Mapping[str, Landed | DomicileError],
    ) -> list[tuple[str, str, str]]:
        """The landed subjects' lookup keys with their ``lookup.set`` entries, in the shard
        transaction of their rows (a refused subject's fence kept it out): at once for the
        subjects new on the shard, which hold none yet; each held one's compared with what it
        holds. Returns (pseudonym, kind, blind) of each key that replaced another."""
        new: list[tuple[str, str, LookupValue]] = []
        replaced = []
        for s in subjects:
            outcome = outcomes[s.pseudonym]
            if not s.lookups or not isinstance(outcome, Landed):
                continue
            if outcome.new:
                new += [(s.pseudonym, s.arrival.jurisdiction, v) for v in s.lookups]
                continue
            kinds = await write_lookups(
                conn, shard, self.actor, s.pseudonym, s.arrival.jurisdiction, s.lookups
            )
            replaced += [(s.pseudonym, v.kind, v.blind) for v in s.lookups if v.kind in kinds]
        await add_lookups(conn, shard, self.actor, new)
        return replaced


def _sized(leaf: bytes) -> bytes:
    """A copy of its own size: orjson's bytes keep a 4 KiB buffer, of which a batch of 10,000
    records would hold 80 MiB."""
    return bytes(memoryview(leaf))
