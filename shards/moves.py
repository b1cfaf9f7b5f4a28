"""Online moves of subjects between shards: a state machine journaled in the catalog.

    planned -> verified -> switched -> done      (or failed / rolled_back)

- planned -> verified: the subject's rows are copied to the target (its fence row there is
  ``moving_in``, so the target's residency guard checks every row) while the subject stays
  writable at the source; the verification (records, digest) is computed from the copied rows
  and the target's fingerprint read back before the copy commits.
- verified -> switched, the write pause: the source fence turns ``moving_out``, which waits for
  every in-flight write holding the fence's share lock and refuses new ones (503, retry). The
  source compares its fingerprints with the copy's in place; subjects written since the copy
  are copied again and verified from the source's rows. The target fence turns ``home`` (with
  ``subject.moved_in`` on the target's log), then one catalog statement compare-and-swaps the
  directory on the placement version and journals the move switched; every router's cache
  entry is dropped: the pause ends.
- switched -> done: the source keeps a ``gone`` tombstone without the raw subject id; its
  records are deleted, with ``subject.moved_out`` on the source's log.

Earlier releases also journaled ``copying`` (resumed as ``planned``) and ``purged`` (as
``switched``). The target's ``home`` commit is the point of no return: before it a move rolls
back (source home again, the target's copy deleted), from it on it only rolls forward. Every
step is idempotent and re-derives what to do from the shards, so a run killed at any point is
resumed (or cancelled) by another. Subjects move in batches sharing a source and target: one
statement per step per batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError

from domicile.audit import events
from domicile.audit.events import SYSTEM, Actor
from domicile.shards import bulk
from domicile.shards.auditlog import shard_leaf
from domicile.shards.directory import Directory
from domicile.shards.engines import scrub_freed_pages
from domicile.shards.errors import (
    AlreadyPlaced,
    DomicileError,
    LeaseLost,
    MoveInProgress,
    MoveRefused,
    MoveStuck,
    ResidencyGuardViolation,
    SubjectNotFound,
)
from domicile.shards.lookup_rows import copy_lookups, read_lookups
from domicile.shards.move_journal import MoveJournal, MovePlan, MoveRow
from domicile.shards.policy import Topology
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.rows import RecordRow, SubjectRow
from domicile.shards.schema import records, subjects
from domicile.shards.states import MoveState, PlacementState, SubjectState
from domicile.shards.validation import validate_subject_id

log = logging.getLogger("domicile.moves")

#: A fingerprint digest no subject has: what ``_verify`` expects of a subject it has no copy of.
_UNKNOWN = ""

#: How long a run may hold a move without advancing it before another run may take it over.
LEASE = timedelta(minutes=2)

#: Subjects cut over together (one write pause); a batch is copied at once and cut over in
#: chunks of this size, so its pause does not grow with the batch.
CUTOVER = 50

#: The states of a move that has not switched yet.
_BEFORE_SWITCH = (MoveState.PLANNED, MoveState.COPYING, MoveState.VERIFIED)


def process_owner() -> str:
    """This run's identity in the journal: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """Whether ``owner`` is a process of this host that no longer exists: its moves can be
    taken over at once, without waiting for the lease to expire (kill -9, OOM)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def subject_digest(entries: Iterable[tuple[str, int, str]]) -> str:
    """The verification digest of a subject's records: SHA-256 over the sorted lines
    ``<record pseudonym> <version> <content_sha256>``. Pseudonyms only, so an auditor can
    recompute it from the log's ``record.put`` and ``record.deleted`` entries."""
    digest = hashlib.sha256()
    for record, version, sha in sorted(entries):
        digest.update(f"{record} {version} {sha}\n".encode())
    return digest.hexdigest()


def describe_error(exc: BaseException) -> str:
    """A journal-safe account of a failure. Driver messages can quote row values (raw record
    keys), so only domain messages are kept verbatim."""
    if isinstance(exc, DomicileError):
        return str(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"database error ({type(exc.orig).__name__})"
    return f"unexpected error ({type(exc).__name__})"


@dataclass(frozen=True)
class Copied:
    """What the copy step wrote to the target for one subject, and its verification (records,
    digest), computed outside the write pause: valid for as long as the source's fingerprint
    still matches ``fingerprint``. The target's copy cannot change meanwhile (it is
    ``moving_in``: only this move writes it)."""

    subject_id: str
    fingerprint: bulk.Fingerprint | None
    verdict: tuple[int, str]
    #: The target's fingerprint, read back in the copy's transaction, matched ``fingerprint``.
    landed: bool


@dataclass
class BatchOutcome:
    done: list[MoveRow] = field(default_factory=list)
    failed: list[MoveRow] = field(default_factory=list)  # rolled back: failed or rolled_back
    unfinished: list[MoveRow] = field(default_factory=list)  # stopped, resumable
    #: Seconds each subject switched now could not be written (its chunk's write pause).
    pauses: list[float] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(m.records or 0 for m in self.done)


def _now() -> datetime:
    return datetime.now(UTC)


def _where_in(column: Any, values: Collection[str]) -> Any:
    return column.in_(list(values))


class Mover:
    def __init__(
        self,
        topology: Topology,
        registry: ShardRegistry,
        directory: Directory,
        journal: MoveJournal,
        pseudonyms: Pseudonymizer,
        *,
        actor: Actor = SYSTEM,
        owner: str | None = None,
        lease: timedelta = LEASE,
        cutover_size: int = CUTOVER,
    ) -> None:
        self.topology = topology
        self.registry = registry
        self.directory = directory
        self.journal = journal
        self.pseudonyms = pseudonyms
        self.actor = actor
        self.owner = owner or process_owner()
        self.lease = lease
        self.cutover_size = cutover_size

    # -- planning ----------------------------------------------------------------------------

    def check(self, jurisdiction: str, source: str, target: str) -> None:
        """Refuse, before anything is copied, a move the topology or the policy forbids."""
        if target not in self.topology.shards:
            raise MoveRefused(f"there is no shard {target!r} in the configuration")
        if target == source:
            raise AlreadyPlaced(target)
        if not self.topology.is_permitted(jurisdiction, target):
            permitted = ", ".join(s.name for s in self.topology.permitted_shards(jurisdiction))
            region = self.topology.shards[target].region
            raise MoveRefused(
                f"the policy does not permit shard {target} (region {region}) for "
                f"jurisdiction {jurisdiction}; permitted: {permitted or 'none'}"
            )

    async def plan(self, plans: Sequence[MovePlan], reason: str) -> list[MoveRow]:
        """Journal the moves; a subject already being moved, or whose placement changed since
        the plan was made, is left out."""
        for p in plans:
            self.check(p.jurisdiction, p.from_shard, p.to_shard)
        return await self.journal.plan(plans, reason=reason, owner=self.owner, lease=self.lease)

    async def claim(
        self, *, ids: Collection[str] | None = None, jurisdiction: str | None = None
    ) -> list[MoveRow]:
        """Take over unfinished moves that no live run holds."""
        dead = {o for o in await self.journal.unfinished_owners() if owner_is_dead(o)}
        return await self.journal.claim(
            owner=self.owner, lease=self.lease, dead_owners=dead, ids=ids, jurisdiction=jurisdiction
        )

    async def move_subject(self, subject_id: str, target: str, reason: str = "move") -> MoveRow:
        """Move one subject now (or finish its interrupted move to the same shard)."""
        validate_subject_id(subject_id)
        pseudonym = self.pseudonyms.subject(subject_id)
        placement = await self.directory.read(pseudonym)
        if placement is None or placement.state == PlacementState.PENDING:
            raise SubjectNotFound()
        pending = await self.journal.unfinished_of(pseudonym)
        if pending is not None:
            if pending.to_shard != target:
                raise MoveInProgress(
                    f"the subject has an unfinished move {pending.id} to {pending.to_shard}; "
                    "resume or cancel it first"
                )
            batch = await self.claim(ids=[pending.id])
        else:
            self.check(placement.jurisdiction, placement.shard, target)
            batch = await self.plan(
                [
                    MovePlan(
                        pseudonym,
                        placement.jurisdiction,
                        placement.shard,
                        target,
                        placement.version,
                    )
                ],
                reason,
            )
        if not batch:
            raise MoveInProgress("another run is moving this subject; retry shortly")
        await self.run(batch)
        moved = await self.journal.get(batch[0].id)
        assert moved is not None
        return moved

    # -- the state machine -------------------------------------------------------------------

    async def run(self, batch: Sequence[MoveRow]) -> BatchOutcome:
        """Drive moves sharing a source and a target from whatever state each is in to an end,
        or leave them resumable (released, with the error) if a shard or the catalog fails."""
        outcome = BatchOutcome()
        if not batch:
            return outcome
        assert len({(m.from_shard, m.to_shard) for m in batch}) == 1
        live = {m.id: m for m in batch}
        try:
            copied = await self._copy(live, outcome)
            await self._cutover(live, outcome, copied)
            await self._purge(live, outcome)
            await self._finish(live, outcome)
        except LeaseLost:
            log.warning("lost the lease on moves %s; another run continues them", _ids(live))
            outcome.unfinished.extend(live.values())
            return outcome
        except ResidencyGuardViolation as exc:
            # The target refuses the jurisdiction (its guard is out of step with the policy).
            # Nothing was switched, since the guard checks rows as they are copied: undo.
            try:
                await self._roll_back(
                    live, list(live.values()), outcome, MoveState.FAILED, str(exc)
                )
            except (DomicileError, DBAPIError) as again:
                await self._stop(live, outcome, again)
        except (DomicileError, DBAPIError) as exc:
            await self._stop(live, outcome, exc)
        if live:  # only a directory changed by hand leaves a move here
            await self._stop(live, outcome, MoveStuck())
        return outcome

    async def _stop(
        self, live: dict[str, MoveRow], outcome: BatchOutcome, exc: BaseException
    ) -> None:
        """Leave the moves where they are, released and annotated, for a later resume. Subjects
        fenced before verification get their writes back meanwhile: their target copy cannot be
        home yet, and a resume fences and syncs them again."""
        error = describe_error(exc)
        log.warning("moves %s stopped: %s", _ids(live), error)
        with contextlib.suppress(DomicileError, DBAPIError):
            early = [m for m in live.values() if m.state in _BEFORE_SWITCH]
            if early:
                source, target = self._shards(live)
                async with target.read() as conn:
                    held = _pairs(
                        await conn.execute(
                            select(subjects.c.pseudonym, subjects.c.state).where(
                                _where_in(subjects.c.pseudonym, [m.pseudonym for m in early])
                            )
                        )
                    )
                # A target copy already home is past the point of no return: its source stays
                # fenced (the target unreachable: all stay fenced).
                await self._unfence(
                    source, [m for m in early if held.get(m.pseudonym) != SubjectState.HOME]
                )
        with contextlib.suppress(DomicileError, DBAPIError):
            await self.journal.release(list(live), owner=self.owner, error=error)
        outcome.unfinished.extend(replace(m, error=error) for m in live.values())
        live.clear()

    async def cancel(self, batch: Sequence[MoveRow]) -> BatchOutcome:
        """Roll back moves that have not switched yet; the rest are resumed instead of left
        half-done (they are past the point of no return)."""
        outcome = BatchOutcome()
        live = {m.id: m for m in batch}
        early = [m for m in batch if m.state in _BEFORE_SWITCH]
        try:
            await self._roll_back(
                live, early, outcome, MoveState.ROLLED_BACK, "cancelled by the operator"
            )
        except (DomicileError, DBAPIError) as exc:
            await self._stop(live, outcome, exc)
        if live:
            rest = await self.run(list(live.values()))
            outcome.done += rest.done
            outcome.failed += rest.failed
            outcome.unfinished += rest.unfinished
        return outcome

    def _shards(self, live: dict[str, MoveRow]) -> tuple[Shard, Shard]:
        first = next(iter(live.values()))
        return self.registry[first.from_shard], self.registry[first.to_shard]

    async def _advance(
        self,
        live: dict[str, MoveRow],
        moves: Sequence[MoveRow],
        expect: MoveState | Collection[MoveState],
        to: MoveState,
        *,
        details: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        ids = {m.id for m in moves}
        advanced = await self.journal.advance(
            ids, owner=self.owner, expect=expect, to=to, lease=self.lease, details=details
        )
        if advanced != ids:
            raise LeaseLost()
        for m in moves:
            records_, digest = (details or {}).get(m.id, (m.records, m.digest))
            live[m.id] = replace(m, state=to, records=records_, digest=digest, error=None)

    async def _end(
        self,
        live: dict[str, MoveRow],
        moves: Sequence[MoveRow],
        outcome: BatchOutcome,
        state: MoveState,
        error: str,
    ) -> None:
        """Finish moves without switching them: their target copies must already be gone."""
        if not moves:
            return
        ids = {m.id for m in moves}
        await self.journal.advance(
            ids,
            owner=self.owner,
            expect=_BEFORE_SWITCH,
            to=state,
            lease=self.lease,
            error=error,
        )
        for m in moves:
            live.pop(m.id, None)
            outcome.failed.append(replace(m, state=state, error=error))
        log.info("moves %s ended %s: %s", _ids(ids), state, error)

    # planned -> verified: bulk copy, the subject still writable at the source

    async def _copy(self, live: dict[str, MoveRow], outcome: BatchOutcome) -> dict[str, Copied]:
        """Copy, and journal the copies ``verified`` with the verification computed from the
        copied rows: outside the write pause, which only confirms it (``_verify``). From
        ``verified`` on the target copy may be home, so a resume never copies again."""
        # ``copying``: journaled by earlier releases before their copy; copied again.
        todo = [m for m in live.values() if m.state in (MoveState.PLANNED, MoveState.COPYING)]
        if not todo:
            return {}
        source, target = self._shards(live)
        by_pseudonym = {m.pseudonym: m for m in live.values()}
        now = _now()
        landed: dict[str, bulk.Fingerprint] = {}
        clash: dict[str, str] = {}
        copy: list[str] = []
        # One snapshot of the source for the fingerprints and the records copied.
        async with source.read(snapshot=True) as out:
            found = await bulk.snapshot_subjects(
                out, [m.pseudonym for m in todo], (SubjectState.HOME, SubjectState.MOVING_OUT)
            )
            if found:
                async with target.write() as conn:
                    # Earlier partial copies and tombstones make way; a subject the target holds
                    # as its own is never touched.
                    clash = await bulk.place_copies(
                        conn,
                        target.name,
                        [
                            SubjectRow(
                                pseudonym=p,
                                subject_id=held.subject_id,
                                jurisdiction=held.jurisdiction,
                                state=SubjectState.MOVING_IN,
                                placement_version=by_pseudonym[p].placement_version + 1,
                                created_at=held.created_at,
                                updated_at=now,
                            )
                            for p, held in found.items()
                        ],
                    )
                    copy = [p for p in found if p not in clash]
                    if copy:
                        await bulk.copy_records(out, conn, target.name, copy)
                        landed = await bulk.fingerprints(conn, copy)
        gone = [m for m in todo if m.pseudonym not in found]
        if gone:  # erased meanwhile: clear any partial copy and let the move go
            await self._roll_back(
                live,
                gone,
                outcome,
                MoveState.ROLLED_BACK,
                f"the subject is no longer on {source.name}",
            )
        if clash:
            await self._end(
                live,
                [by_pseudonym[p] for p in clash],
                outcome,
                MoveState.FAILED,
                f"shard {target.name} already holds the subject",
            )
        copied = self._copied(found, copy, landed)
        await self._advance(
            live,
            [by_pseudonym[p] for p in copy],
            (MoveState.PLANNED, MoveState.COPYING),
            MoveState.VERIFIED,
            details={by_pseudonym[p].id: c.verdict for p, c in copied.items()},
        )
        return copied

    def _copied(
        self,
        found: dict[str, bulk.Held],
        copy: Sequence[str],
        landed: dict[str, bulk.Fingerprint],
    ) -> dict[str, Copied]:
        """The verification of each copied subject: its digest from the source's fingerprinted
        snapshot, the copy intact where both databases computed the same fingerprint."""
        copied: dict[str, Copied] = {}
        for p in copy:
            held = found[p]
            if held.subject_id is None:
                continue  # verification says why
            digest = subject_digest(
                (self.pseudonyms.record(held.subject_id, c, k), v, label)
                for c, k, v, label in held.entries
            )
            verdict = (len(held.entries), digest)
            fp = held.fingerprint
            copied[p] = Copied(held.subject_id, fp, verdict, landed.get(p) == fp)
        return copied

    # copying -> verified -> switched: the write pause

    async def _cutover(
        self, live: dict[str, MoveRow], outcome: BatchOutcome, copied: dict[str, Copied]
    ) -> None:
        """Cut the copied subjects over a chunk at a time: a chunk's writes pause only for the
        few statements of its own cutover, not for the batch's copy."""
        todo = [m for m in live.values() if m.state == MoveState.VERIFIED]
        source, target = self._shards(live)
        for i in range(0, len(todo), self.cutover_size):
            chunk = todo[i : i + self.cutover_size]
            if i:  # the first chunk follows its copy at once (a relocation's only chunk)
                await self._catch_up(source, target, chunk, copied)
            await self._pause(live, outcome, [m for m in chunk if m.id in live], copied)

    async def _catch_up(
        self,
        source: Shard,
        target: Shard,
        moves: Sequence[MoveRow],
        copied: dict[str, Copied],
    ) -> None:
        """Before the fence: copy again the subjects written since their copy, so the pause
        re-copies only those written in the last moments. A subject that does not verify now is
        left to the fenced verification, which decides."""
        expected = {
            m.pseudonym: done.fingerprint.digest if done.fingerprint else None
            for m in moves
            if (done := copied.get(m.pseudonym)) is not None and done.landed
        }
        if not expected:
            return
        async with source.read() as conn:
            drifted = await bulk.drifted(conn, expected)
        if not drifted:
            return
        subject_ids: dict[str, str | None] = {p: copied[p].subject_id for p in drifted}
        synced = await self._sync_and_verify(
            source,
            target,
            [m for m in moves if m.pseudonym in drifted],
            subject_ids,
            drifted,
            copied,
        )
        for p, verdict in synced.items():
            if not isinstance(verdict, str):
                copied[p] = verdict

    async def _pause(
        self,
        live: dict[str, MoveRow],
        outcome: BatchOutcome,
        todo: Sequence[MoveRow],
        copied: dict[str, Copied],
    ) -> None:
        if not todo:
            return
        source, target = self._shards(live)
        started = time.monotonic()
        async with source.write() as conn:
            # Waits for in-flight writes (they hold the fence row's share lock); later ones
            # see moving_out and answer 503.
            subject_ids = await bulk.set_state(
                conn,
                [m.pseudonym for m in todo],
                # switched_out: a run stopped between the source's read fence and the switch
                expect=(SubjectState.HOME, SubjectState.MOVING_OUT, SubjectState.SWITCHED_OUT),
                to=SubjectState.MOVING_OUT,
                now=_now(),
            )
        vanished = [m for m in todo if m.pseudonym not in subject_ids]
        if vanished:  # erased before the fence went up
            await self._roll_back(
                live,
                vanished,
                outcome,
                MoveState.ROLLED_BACK,
                f"the subject is no longer on {source.name}",
            )
        todo = [m for m in todo if m.pseudonym in subject_ids]
        if not todo:
            return
        verdicts = await self._verify(source, target, todo, subject_ids, copied)
        changed: dict[str, tuple[int, str]] = {}
        for m in todo:
            verdict = verdicts[m.pseudonym]
            if isinstance(verdict, str):
                log.warning("move %s failed verification: %s", m.id, verdict)
                await self._roll_back(live, [m], outcome, MoveState.FAILED, verdict)
            elif verdict != (m.records, m.digest):
                # Written since the copy, or resumed: the audit entries carry this verdict.
                # It is journaled with the switch; a run that stops before then leaves the
                # source fenced, so the next one computes the same verdict again.
                changed[m.id] = verdict
                live[m.id] = replace(m, records=verdict[0], digest=verdict[1])
        good = [live[m.id] for m in todo if m.id in live]
        switched = await self._switch(live, good, target, changed)
        outcome.pauses += [time.monotonic() - started] * switched

    async def _verify(
        self,
        source: Shard,
        target: Shard,
        moves: Sequence[MoveRow],
        subject_ids: dict[str, str | None],
        copied: dict[str, Copied],
    ) -> dict[str, tuple[int, str] | str]:
        """Compare the fenced source's fingerprints (every record's content digest) with the
        copy's, in the source in one statement: a subject whose copy landed intact and is still
        what the source holds keeps the verdict computed then. The source sends the records of
        the rest (written since the copy, resumed, corrupt), which are synced and verified."""
        expected = {
            m.pseudonym: (
                (done.fingerprint.digest if done.fingerprint else None)
                if (done := copied.get(m.pseudonym)) is not None
                and done.landed
                and done.subject_id == subject_ids[m.pseudonym]
                else _UNKNOWN
            )
            for m in moves
        }
        async with source.read() as conn:
            drifted = await bulk.drifted(conn, expected)
        verdicts: dict[str, tuple[int, str] | str] = {
            p: copied[p].verdict for p in expected if p not in drifted
        }
        rest = [m for m in moves if m.pseudonym in drifted]
        if rest:
            synced = await self._sync_and_verify(source, target, rest, subject_ids, drifted, copied)
            verdicts.update({p: v if isinstance(v, str) else v.verdict for p, v in synced.items()})
        return verdicts

    async def _sync_and_verify(
        self,
        source: Shard,
        target: Shard,
        moves: Sequence[MoveRow],
        subject_ids: dict[str, str | None],
        rows: dict[str, list[RecordRow]],
        copied: dict[str, Copied],
    ) -> dict[str, Copied | str]:
        """Verify from the source's ``rows``: each record's bytes against the digest recorded
        when it was written, and the target's fingerprint against theirs. A subject whose copy
        differs (written since the copy) is copied again and its fingerprint read back, in one
        transaction. Per subject: the copy as it now stands verified, or why it failed."""
        wanted = [m.pseudonym for m in moves]
        held = {p: copied[p].fingerprint for p in wanted if p in copied and copied[p].landed}
        unknown = [p for p in wanted if p not in held]
        if unknown:  # resumed: what the target holds is read
            fetched = await _fingerprints(target, unknown)
            held.update({p: fetched.get(p) for p in unknown})
        entries = {p: [bulk.entry(r) for r in rows[p]] for p in wanted}
        expected = {p: bulk.fingerprint(listed) for p, listed in entries.items()}
        stale = [p for p in wanted if expected[p] != held[p]]
        if stale:
            async with target.write() as conn:
                await conn.execute(delete(records).where(_where_in(records.c.pseudonym, stale)))
                await bulk.write_records(conn, target.name, [r for p in stale for r in rows[p]])
                landed = await bulk.fingerprints(conn, stale)
            held.update({p: landed.get(p) for p in stale})
        verdicts: dict[str, Copied | str] = {}
        for p, listed in entries.items():
            subject_id = subject_ids[p]
            if any(label != actual for _, _, _, label, actual in listed):
                verdicts[p] = f"a record's content at {source.name} does not match its digest"
            elif expected[p] != held[p]:
                verdicts[p] = f"the copy at {target.name} does not match {source.name}"
            elif subject_id is None:
                verdicts[p] = f"the subject at {source.name} has no subject id"
            else:
                digest = subject_digest(
                    (self.pseudonyms.record(subject_id, c, k), v, actual)
                    for c, k, v, _, actual in listed
                )
                verdicts[p] = Copied(subject_id, expected[p], (len(listed), digest), landed=True)
        return verdicts

    async def _switch(
        self,
        live: dict[str, MoveRow],
        moves: Sequence[MoveRow],
        target: Shard,
        details: dict[str, tuple[int, str]],
    ) -> int:
        """The end of the pause; returns how many subjects switched."""
        if not moves:
            return 0
        entries = self._entries(target, events.SUBJECT_MOVED_IN, moves)
        # Lookup keys are carried here, under the source's fence (a few rows per subject, and
        # none of them can change meanwhile), in the transaction that makes the target home.
        source = self.registry[moves[0].from_shard]
        fenced = [m.pseudonym for m in moves]
        async with source.read() as conn:
            keys = await read_lookups(conn, fenced)
        async with target.write() as conn:
            await copy_lookups(conn, fenced, keys)
            await bulk.set_state(
                conn,
                list(entries),
                expect=(SubjectState.MOVING_IN,),
                to=SubjectState.HOME,
                now=_now(),
                entries=entries,
            )
        # Before the directory names the target (from then on writes land there), the source
        # stops serving reads: a router with a stale cache re-resolves instead of reading data
        # older than a write another router has had acknowledged. After the target's home, so
        # a subject is always home on one shard or fenced at its source.
        async with source.write() as conn:
            await bulk.set_state(
                conn,
                [m.pseudonym for m in moves],
                expect=(SubjectState.MOVING_OUT,),
                to=SubjectState.SWITCHED_OUT,
                now=_now(),
            )
        switched = await self.directory.switch(
            moves, owner=self.owner, lease=self.lease, details=details
        )
        for m in moves:
            if m.id in switched:
                live[m.id] = replace(m, state=MoveState.SWITCHED)
        # Moves not switched stay in ``live`` and are stopped by ``run``: only an operator can
        # change a fenced subject's directory entry, so they are left for one rather than guessed.
        return len(switched)

    # switched -> done (``purged``: journaled by earlier releases after their purge)

    async def _purge(self, live: dict[str, MoveRow], outcome: BatchOutcome) -> None:
        """Tombstone the source and delete its copy; idempotent, so the journal keeps the move
        ``switched`` until ``_finish``."""
        todo = [m for m in live.values() if m.state in (MoveState.SWITCHED, MoveState.PURGED)]
        if not todo:
            return
        source, _ = self._shards(live)
        entries = self._entries(source, events.SUBJECT_MOVED_OUT, todo)
        async with source.write() as conn:
            await bulk.set_state(
                conn,
                list(entries),
                # moving_out: switched by a release before the source's read fence
                expect=(SubjectState.SWITCHED_OUT, SubjectState.MOVING_OUT),
                to=SubjectState.GONE,
                now=_now(),
                entries=entries,
                forget=True,
            )

    async def _finish(self, live: dict[str, MoveRow], outcome: BatchOutcome) -> None:
        todo = [m for m in live.values() if m.state in (MoveState.SWITCHED, MoveState.PURGED)]
        if not todo:
            return
        source, _ = self._shards(live)
        await scrub_freed_pages(source.engine)
        await self._advance(live, todo, (MoveState.SWITCHED, MoveState.PURGED), MoveState.DONE)
        for m in todo:
            outcome.done.append(live.pop(m.id))
        # Debug: the callers report moves themselves (comply's progress, relocation metrics).
        log.debug("moved %d subjects %s -> %s", len(todo), todo[0].from_shard, todo[0].to_shard)

    def _entries(self, shard: Shard, event: str, moves: Sequence[MoveRow]) -> dict[str, bytes]:
        """The audit leaf of each move, by subject in pseudonym order: appended in the
        transaction of the change, for the subjects it changes (a resumed step appends none
        twice)."""
        return {
            m.pseudonym: shard_leaf(
                shard,
                event,
                self.actor,
                subject=m.pseudonym,
                jurisdiction=m.jurisdiction,
                from_shard=m.from_shard,
                to_shard=m.to_shard,
                digest=m.digest,
                records=m.records,
                move=m.id,
            )
            for m in sorted(moves, key=lambda m: m.pseudonym)
        }

    # rolling back (before the point of no return only)

    async def _roll_back(
        self,
        live: dict[str, MoveRow],
        moves: Sequence[MoveRow],
        outcome: BatchOutcome,
        state: MoveState,
        error: str,
    ) -> None:
        """Delete the target's copies of ``moves`` and lift their source fences, and end them
        in ``state``. A move whose target copy is already home is past the point of no return:
        it stays in ``live``, to be rolled forward."""
        if not moves:
            return
        source, target = self._shards(live)
        wanted = [m.pseudonym for m in moves]
        async with target.write() as conn:
            rows = _pairs(
                await conn.execute(
                    select(subjects.c.pseudonym, subjects.c.state).where(
                        _where_in(subjects.c.pseudonym, wanted)
                    )
                )
            )
            doomed = [p for p, s in rows.items() if s == SubjectState.MOVING_IN]
            if doomed:
                await conn.execute(delete(records).where(_where_in(records.c.pseudonym, doomed)))
                await conn.execute(delete(subjects).where(_where_in(subjects.c.pseudonym, doomed)))
        undo = [m for m in moves if rows.get(m.pseudonym) != SubjectState.HOME]
        if not undo:
            return
        await self._unfence(source, undo)
        await self._end(live, undo, outcome, state, error)

    async def _unfence(self, source: Shard, moves: Sequence[MoveRow]) -> None:
        async with source.write() as conn:
            await bulk.set_state(
                conn,
                [m.pseudonym for m in moves],
                expect=(SubjectState.MOVING_OUT, SubjectState.SWITCHED_OUT),
                to=SubjectState.HOME,
                now=_now(),
            )


async def _fingerprints(shard: Shard, pseudonyms: Sequence[str]) -> dict[str, bulk.Fingerprint]:
    async with shard.read() as conn:
        return await bulk.fingerprints(conn, pseudonyms)


def _pairs(rows: Iterable[Any]) -> dict[Any, Any]:
    return {first: second for first, second in rows}


def _ids(moves: Iterable[str]) -> str:
    ids = sorted(moves)
    return ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
