"""The record store: the one write path for subjects and records.

Every change of placement or content happens here, inside one transaction on the subject's
home shard that also (a) checks the shard's own fence for the subject and (b) appends the
change's audit entry. A change without its entry, or an entry without its change, cannot commit.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import and_, delete, func, select, tuple_, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit import events
from domicile.audit.events import SYSTEM, Actor
from domicile.shards.auditlog import append_entry, leaf_around_version
from domicile.shards.directory import Directory
from domicile.shards.engines import insert_on_conflict, scrub_freed_pages, statement_pool
from domicile.shards.errors import (
    DomicileError,
    JurisdictionConflict,
    LookupTaken,
    MovedAway,
    NotHome,
    PlacementNotPermitted,
    RecordNotFound,
    ResidencyGuardViolation,
    SubjectMoving,
    SubjectNotFound,
    VersionMismatch,
)
from domicile.shards.lookup_index import LookupIndex
from domicile.shards.lookup_keys import LookupKeys, LookupValue
from domicile.shards.lookup_rows import delete_lookup, holds, write_lookups
from domicile.shards.placement import choose_home
from domicile.shards.placements import Placement
from domicile.shards.policy import Topology
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.relocation import Relocator
from domicile.shards.schema import lookups, records, subjects
from domicile.shards.states import PlacementState, SubjectState
from domicile.shards.validation import (
    validate_collection,
    validate_jurisdiction,
    validate_record_address,
    validate_subject_id,
)

T = TypeVar("T")


#: Set while an operation runs at a ``switched_out`` source the catalog still names (see
#: ``RecordStore._at_confirmed_source``): reads may be served there, writes never.
_SOURCE_CONFIRMED: ContextVar[bool] = ContextVar("domicile_source_confirmed", default=False)


def _refusal(shard: str, state: str | None, *, writing: bool) -> DomicileError | None:
    """What a shard answers for a subject whose fence row says ``state`` (None: no row)."""
    if state == SubjectState.HOME or (not writing and state == SubjectState.MOVING_OUT):
        return None
    if not writing and state == SubjectState.SWITCHED_OUT and _SOURCE_CONFIRMED.get():
        return None
    if state == SubjectState.MOVING_OUT:
        return SubjectMoving()
    if state == SubjectState.SWITCHED_OUT:
        return MovedAway(shard)
    return NotHome(shard)


#: The columns of a record as listed and exported.
_LISTED = (
    records.c.collection,
    records.c.key,
    records.c.version,
    records.c.content_sha256,
    records.c.data,
)

# The hot paths on PostgreSQL, each one prepared statement in one round trip (statements are
# atomic, so no transaction block): the SQLAlchemy forms below, with BEGIN and COMMIT, cost
# about ten times the CPU (bench/RESULTS.md). A read checks the fence in the same snapshot.
_GET_PG = """
SELECT s.state, r.version, r.content_sha256, r.data
FROM subjects s LEFT JOIN records r
  ON r.pseudonym = s.pseudonym AND r.collection = $2 AND r.key = $3
WHERE s.pseudonym = $1
"""
# A put: FOR SHARE on the fence row, the upsert only if it says home, and the audit entry with
# the new version spliced into its leaf; all or nothing, as in the transaction of ``put``. The
# state is the vocabulary's own value, never input.
_PUT_PG = f"""
WITH fence AS (
    SELECT state FROM subjects WHERE pseudonym = $1 FOR SHARE
), put AS (
    INSERT INTO records AS r (pseudonym, collection, key, data, version, jurisdiction,
                              content_sha256, created_at, updated_at)
    SELECT $1, $2::text, $3::text, $4::text, 1, $5::text, $6::text, $7::timestamptz,
           $7::timestamptz
    FROM fence WHERE state = '{SubjectState.HOME}'
    ON CONFLICT (pseudonym, collection, key) DO UPDATE
    SET data = excluded.data, version = r.version + 1,
        content_sha256 = excluded.content_sha256, updated_at = excluded.updated_at
    RETURNING version
), entry AS (
    INSERT INTO audit_pending (leaf, subject)
    SELECT $8::bytea || convert_to(version::text, 'UTF8') || $9::bytea, $1 FROM put
)
SELECT (SELECT state FROM fence) AS state, (SELECT version FROM put) AS version
"""  # noqa: S608


def encode_data(data: dict[str, Any]) -> bytes:
    """The stored form of a record's content; ``content_sha256`` is the digest of these bytes."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def content_digest(stored: bytes) -> str:
    return hashlib.sha256(stored).hexdigest()


@dataclass(frozen=True)
class SubjectPlacement:
    subject_id: str
    jurisdiction: str
    region: str
    country: str
    shard: str


@dataclass(frozen=True)
class StoredRecord:
    subject_id: str
    collection: str
    key: str
    version: int
    jurisdiction: str
    region: str
    shard: str
    content_sha256: str
    data: bytes | None = None  # stored JSON bytes, when read


@dataclass(frozen=True)
class SubjectExport:
    """Everything held of a subject, read in one snapshot of its home shard."""

    placement: SubjectPlacement
    records: Sequence[StoredRecord]
    lookups: Mapping[str, str]  # kind -> the value as given


@dataclass(frozen=True)
class RecordPage:
    items: list[StoredRecord]
    next_cursor: tuple[str, str] | None


def _now() -> datetime:
    return datetime.now(UTC)


class RecordStore:
    def __init__(
        self,
        topology: Topology,
        registry: ShardRegistry,
        directory: Directory,
        pseudonyms: Pseudonymizer,
        lookup_keys: LookupKeys,
        lookup_index: LookupIndex,
    ) -> None:
        self.topology = topology
        self.registry = registry
        self.directory = directory
        self.pseudonyms = pseudonyms
        self.lookup_keys = lookup_keys
        self.lookup_index = lookup_index
        #: Moves a subject the policy in effect no longer permits before a write to it; None:
        #: such a write is refused 409 ``relocation_required`` (processes that cannot move).
        self.relocator: Relocator | None = None

    # -- helpers -----------------------------------------------------------------------------

    async def _fence(self, conn: AsyncConnection, shard: Shard, pseudonym: str) -> None:
        """Inside the write transaction: this shard must be the subject's home right now.

        On PostgreSQL the row is share-locked, so a move's switch (which updates it) waits for
        in-flight writes and no write can slip in after it. SQLite writers are serialised.
        """
        state = (
            await conn.execute(
                select(subjects.c.state)
                .where(subjects.c.pseudonym == pseudonym)
                .with_for_update(read=True)
            )
        ).scalar_one_or_none()
        refusal = _refusal(shard.name, state, writing=True)
        if refusal is not None:
            raise refusal

    def placement_view(self, subject_id: str, p: Placement) -> SubjectPlacement:
        shard = self.registry[p.shard]
        return SubjectPlacement(
            subject_id, p.jurisdiction, shard.region.name, shard.region.country, shard.name
        )

    def _precheck(self, placement: Placement | None, writing: bool) -> None:
        if placement is None or placement.state == PlacementState.PENDING:
            raise SubjectNotFound()
        if writing:
            if placement.state == PlacementState.MOVING:
                raise SubjectMoving()
            if not self.topology.is_permitted(placement.jurisdiction, placement.shard):
                raise PlacementNotPermitted(placement.jurisdiction, placement.shard)

    async def on_home(
        self,
        subject_id: str,
        operation: Callable[[Placement, Shard], Awaitable[T]],
        *,
        writing: bool,
    ) -> T:
        """Run ``operation`` against the subject's home; re-resolve once if the shard says it is
        not home (a stale cache entry after a move or erasure)."""
        validate_subject_id(subject_id)
        pseudonym = self.pseudonyms.subject(subject_id)
        placement = await self.directory.resolve(pseudonym)
        try:
            self._precheck(placement, writing)
        except DomicileError:
            # The refusal may come from a stale cache entry: decide on the catalog's word.
            placement = await self.directory.resolve(pseudonym, fresh=True)
            try:
                self._precheck(placement, writing)
            except PlacementNotPermitted:
                if self.relocator is None:
                    raise
                placement = await self._relocated(subject_id, pseudonym, placement)
        assert placement is not None
        for attempt in (1, 2):
            try:
                return await operation(placement, self.registry[placement.shard])
            except NotHome as exc:
                await self.directory.invalidate(pseudonym)
                fresh = await self.directory.resolve(pseudonym, fresh=True)
                if isinstance(exc, MovedAway) and fresh == placement:
                    try:
                        return await self._at_confirmed_source(operation, placement)
                    except NotHome:
                        # Purged since the catalog was read: the switch had committed by then,
                        # so the catalog now names the new home.
                        await self.directory.invalidate(pseudonym)
                        fresh = await self.directory.resolve(pseudonym, fresh=True)
                if attempt == 2 or fresh == placement:
                    # The catalog still names this shard but the shard has no such subject:
                    # an erasure interrupted half-way. The subject no longer exists.
                    raise SubjectNotFound() from None
                self._precheck(fresh, writing)
                assert fresh is not None
                placement = fresh
        raise AssertionError("unreachable")

    async def _at_confirmed_source(
        self, operation: Callable[[Placement, Shard], Awaitable[T]], placement: Placement
    ) -> T:
        """A move's source is ``switched_out`` while the catalog, read after the source refused,
        still names it: the switch has not committed, so no write can have landed on the target
        yet and the source's data is current. A read is served there; a write waits."""
        token = _SOURCE_CONFIRMED.set(True)
        try:
            return await operation(placement, self.registry[placement.shard])
        except MovedAway:
            raise SubjectMoving() from None
        finally:
            _SOURCE_CONFIRMED.reset(token)

    async def _relocated(
        self, subject_id: str, pseudonym: str, placement: Placement | None
    ) -> Placement:
        """Placement rule 8: move the subject to a shard the rule in effect permits, then
        write there. No permitted shard at all is 422 ``no_permitted_region``."""
        assert placement is not None
        assert self.relocator is not None
        target = choose_home(self.topology, placement.jurisdiction, pseudonym)
        await self.relocator.relocate(subject_id, pseudonym, target.name)
        fresh = await self.directory.resolve(pseudonym, fresh=True)
        self._precheck(fresh, writing=True)
        assert fresh is not None
        return fresh

    # -- subjects ----------------------------------------------------------------------------

    async def register(
        self,
        subject_id: str,
        jurisdiction: str,
        actor: Actor,
        lookups: Mapping[str, str] | None = None,
    ) -> tuple[SubjectPlacement, bool]:
        """Register a subject, with its lookup keys; returns its placement and whether it was
        created now. All or nothing: a lookup value another subject holds refuses the
        registration (``LookupTaken``) before anything is stored. Registering again sets the
        lookup keys given (the same again changes nothing)."""
        validate_subject_id(subject_id)
        validate_jurisdiction(jurisdiction)
        values = [
            self.lookup_keys.prepare(kind, value, jurisdiction)
            for kind, value in (lookups or {}).items()
        ]
        pseudonym = self.pseudonyms.subject(subject_id)
        existing = await self.directory.resolve(pseudonym, fresh=True)
        if existing is not None and existing.state != PlacementState.PENDING:
            if existing.jurisdiction != jurisdiction:
                raise JurisdictionConflict(existing.jurisdiction, jurisdiction)
            if lookups:
                await self.set_lookups(subject_id, lookups, actor)
            return self.placement_view(subject_id, existing), False
        claimed = await self.claim_lookups(pseudonym, values)
        try:
            home = choose_home(self.topology, jurisdiction, pseudonym)
            placement = await self.directory.reserve(pseudonym, jurisdiction, home.name)
            if placement.jurisdiction != jurisdiction:
                raise JurisdictionConflict(placement.jurisdiction, jurisdiction)
            shard = self.registry[placement.shard]
            await self._create_on_shard(shard, subject_id, pseudonym, jurisdiction, actor, values)
        except BaseException:
            await self.lookup_index.release_claims(claimed, pseudonym)
            raise
        # Created now is whoever activates the placement: one of concurrent registrations, or
        # the retry that completes one a crash interrupted.
        created = placement.state == PlacementState.PENDING and await self.directory.activate(
            pseudonym
        )
        # The lookup keys after the placement: a claim left pending by a crash in between is
        # settled for the subject (its write is on the shard), never lost.
        await self.activate_lookups(shard, pseudonym, jurisdiction, values, actor)
        return self.placement_view(subject_id, placement), created

    async def _create_on_shard(
        self,
        shard: Shard,
        subject_id: str,
        pseudonym: str,
        jurisdiction: str,
        actor: Actor,
        values: Sequence[LookupValue] = (),
    ) -> None:
        now = _now()
        async with shard.write() as conn:
            stmt = (
                insert_on_conflict(conn, subjects)
                .values(
                    pseudonym=pseudonym,
                    subject_id=subject_id,
                    jurisdiction=jurisdiction,
                    state=SubjectState.HOME,
                    placement_version=1,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=[subjects.c.pseudonym])
                .returning(subjects.c.pseudonym)
            )
            if (await conn.execute(stmt)).first() is not None:
                await append_entry(
                    conn,
                    shard,
                    events.SUBJECT_REGISTERED,
                    actor,
                    subject=pseudonym,
                    jurisdiction=jurisdiction,
                )
            await write_lookups(conn, shard, actor, pseudonym, jurisdiction, values)

    # -- lookup keys -------------------------------------------------------------------------

    async def holds_lookup(self, pseudonym: str, kind: str, blind: str) -> bool:
        """Whether the subject is placed and its home shard holds (kind, blind): how another
        subject's stale claim is settled (``LookupIndex.claim``). What a registration that never
        completed wrote of it is removed: its claim passes to the claimant."""
        placement = await self.directory.read(pseudonym)
        if placement is None:
            return False
        shard = self.registry[placement.shard]
        if placement.state == PlacementState.PENDING:
            async with shard.write() as conn:
                await delete_lookup(
                    conn, shard, SYSTEM, pseudonym, placement.jurisdiction, kind, blind=blind
                )
            return False
        async with shard.read() as conn:
            return await holds(conn, pseudonym, kind, blind)

    async def claim_lookups(
        self, pseudonym: str, values: Sequence[LookupValue]
    ) -> list[tuple[str, str]]:
        """Claim every value for the subject, or none: the claims this call made (to release
        with ``lookup_index.release_claims`` if what follows fails); ``LookupTaken`` for the
        first value another subject holds. (A bulk import claims a batch's values at once:
        ``LookupIndex.claim_many``.)"""
        claimed: list[tuple[str, str]] = []
        try:
            for v in values:
                if await self.lookup_index.claim(v.kind, v.blind, pseudonym, self.holds_lookup):
                    claimed.append((v.kind, v.blind))
        except BaseException:
            await self.lookup_index.release_claims(claimed, pseudonym)
            raise
        return claimed

    async def activate_lookups(
        self,
        shard: Shard,
        pseudonym: str,
        jurisdiction: str,
        values: Sequence[LookupValue],
        actor: Actor,
    ) -> None:
        """Activate the subject's claims of ``values``, written on ``shard``. A claim taken over
        meanwhile (held past its lease) loses: its value is removed from the shard again (a
        bulk import's subject whose batch activation found one lost comes here too)."""
        if await self.lookup_index.activate_all([(v.kind, v.blind) for v in values], pseudonym):
            return
        async with shard.write() as conn:
            for v in values:
                await delete_lookup(
                    conn, shard, actor, pseudonym, jurisdiction, v.kind, blind=v.blind
                )
        raise LookupTaken(values[0].kind)

    async def set_lookups(self, subject_id: str, lookups: Mapping[str, str], actor: Actor) -> None:
        """Set or replace the subject's lookup keys (kind -> value), all or none: a value
        another subject holds is ``LookupTaken`` and changes nothing. Values are normalised in
        the subject's jurisdiction; one already set is left as it is."""
        for kind in lookups:
            self.lookup_keys.method(kind)

        async def set_on(p: Placement, shard: Shard) -> None:
            values = [
                self.lookup_keys.prepare(kind, value, p.jurisdiction)
                for kind, value in lookups.items()
            ]
            claimed = await self.claim_lookups(p.pseudonym, values)
            try:
                async with shard.write() as conn:
                    await self._fence(conn, shard, p.pseudonym)
                    replaced = await write_lookups(
                        conn, shard, actor, p.pseudonym, p.jurisdiction, values
                    )
            except BaseException:
                await self.lookup_index.release_claims(claimed, p.pseudonym)
                raise
            await self.activate_lookups(shard, p.pseudonym, p.jurisdiction, values, actor)
            for v in values:
                if v.kind in replaced:
                    await self.lookup_index.release(p.pseudonym, v.kind, keep=v.blind)

        await self.on_home(subject_id, set_on, writing=True)

    async def set_lookup(self, subject_id: str, kind: str, value: str, actor: Actor) -> None:
        """Set or replace the subject's lookup key of ``kind`` (``PUT .../lookups/{kind}``)."""
        await self.set_lookups(subject_id, {kind: value}, actor)

    async def remove_lookup(self, subject_id: str, kind: str, actor: Actor) -> None:
        """Remove the subject's lookup key of ``kind``, if it has one; then its value is free.
        Repeated, it releases what an earlier attempt left in the catalog."""
        self.lookup_keys.method(kind)

        async def remove_on(p: Placement, shard: Shard) -> None:
            async with shard.write() as conn:
                await self._fence(conn, shard, p.pseudonym)
                await delete_lookup(conn, shard, actor, p.pseudonym, p.jurisdiction, kind)
            await self.lookup_index.release(p.pseudonym, kind)

        await self.on_home(subject_id, remove_on, writing=True)

    async def placement(self, subject_id: str) -> SubjectPlacement:
        """Where the subject lives, on the catalog's word: this answer touches no shard that
        could refuse a stale cache entry (another process, say `domicile move`, may have moved
        the subject), so it skips the cache."""
        validate_subject_id(subject_id)
        placement = await self.directory.resolve(self.pseudonyms.subject(subject_id), fresh=True)
        if placement is None or placement.state == PlacementState.PENDING:
            raise SubjectNotFound()
        return self.placement_view(subject_id, placement)

    async def erase(self, subject_id: str, actor: Actor) -> int:
        """Right to erasure: every record and the subject itself. Returns records removed."""

        async def erase_on(p: Placement, shard: Shard) -> int:
            async with shard.write() as conn:
                await self._fence(conn, shard, p.pseudonym)
                removed = (
                    await conn.execute(delete(records).where(records.c.pseudonym == p.pseudonym))
                ).rowcount
                # Its lookup keys go with the subject row (ON DELETE CASCADE).
                await conn.execute(delete(subjects).where(subjects.c.pseudonym == p.pseudonym))
                await append_entry(
                    conn,
                    shard,
                    events.SUBJECT_ERASED,
                    actor,
                    subject=p.pseudonym,
                    jurisdiction=p.jurisdiction,
                    records=removed,
                )
            await self.lookup_index.release(p.pseudonym)
            await self.directory.remove(p.pseudonym)
            await scrub_freed_pages(shard.engine)
            return int(removed)

        try:
            return await self.on_home(subject_id, erase_on, writing=False)
        except SubjectNotFound:
            # An earlier erasure may have committed on the shard and stopped before the
            # catalog: finish it, so the erasure is idempotent.
            pseudonym = self.pseudonyms.subject(subject_id)
            leftover = await self.directory.read(pseudonym)
            if leftover is None or leftover.state == PlacementState.PENDING:
                raise
            await self.lookup_index.release(pseudonym)
            await self.directory.remove(pseudonym)
            return 0

    # -- records -----------------------------------------------------------------------------

    def _record(
        self,
        subject_id: str,
        p: Placement,
        shard: Shard,
        collection: str,
        key: str,
        version: int,
        digest: str,
        data: bytes | None = None,
    ) -> StoredRecord:
        return StoredRecord(
            subject_id,
            collection,
            key,
            version,
            p.jurisdiction,
            shard.region.name,
            shard.name,
            digest,
            data,
        )

    async def put(
        self,
        subject_id: str,
        collection: str,
        key: str,
        data: dict[str, Any],
        actor: Actor,
        *,
        if_match: int | None = None,
    ) -> StoredRecord:
        validate_record_address(collection, key)
        stored = encode_data(data)
        digest = content_digest(stored)
        body = stored.decode()
        record_pseudonym = self.pseudonyms.record(subject_id, collection, key)

        async def put_on(p: Placement, shard: Shard) -> StoredRecord:
            now = _now()
            entry = {
                "subject": p.pseudonym,
                "jurisdiction": p.jurisdiction,
                "record": record_pseudonym,
                "content_sha256": digest,
            }
            pool = statement_pool(shard.engine)
            if pool is not None and if_match is None:
                await shard.ensure_ready()
                head, tail = leaf_around_version(shard, events.RECORD_PUT, actor, **entry)
                row = await pool.fetchrow(
                    _PUT_PG,
                    *(p.pseudonym, collection, key, body, p.jurisdiction, digest, now, head, tail),
                    unavailable=shard.unavailable,
                    guard=lambda: ResidencyGuardViolation(shard.name),
                )
                assert row is not None
                if row["version"] is None:
                    raise _refusal(shard.name, row["state"], writing=True) or NotHome(shard.name)
                return self._record(subject_id, p, shard, collection, key, row["version"], digest)
            where = and_(
                records.c.pseudonym == p.pseudonym,
                records.c.collection == collection,
                records.c.key == key,
            )
            async with shard.write() as conn:
                await self._fence(conn, shard, p.pseudonym)
                if if_match is None:
                    ins = insert_on_conflict(conn, records).values(
                        pseudonym=p.pseudonym,
                        collection=collection,
                        key=key,
                        data=body,
                        version=1,
                        jurisdiction=p.jurisdiction,
                        content_sha256=digest,
                        created_at=now,
                        updated_at=now,
                    )
                    stmt = ins.on_conflict_do_update(
                        index_elements=[records.c.pseudonym, records.c.collection, records.c.key],
                        set_={
                            "data": body,
                            "version": records.c.version + 1,
                            "content_sha256": digest,
                            "updated_at": now,
                        },
                    ).returning(records.c.version)
                    version = int((await conn.execute(stmt)).scalar_one())
                else:
                    row = (
                        await conn.execute(
                            update(records)
                            .where(where, records.c.version == if_match)
                            .values(
                                data=body,
                                version=if_match + 1,
                                content_sha256=digest,
                                updated_at=now,
                            )
                            .returning(records.c.version)
                        )
                    ).first()
                    if row is None:
                        current = (
                            await conn.execute(select(records.c.version).where(where))
                        ).scalar_one_or_none()
                        raise VersionMismatch(if_match, current)
                    version = int(row.version)
                await append_entry(conn, shard, events.RECORD_PUT, actor, **entry, version=version)
            return self._record(subject_id, p, shard, collection, key, version, digest)

        return await self.on_home(subject_id, put_on, writing=True)

    async def get(self, subject_id: str, collection: str, key: str) -> StoredRecord:
        validate_record_address(collection, key)

        async def get_on(p: Placement, shard: Shard) -> StoredRecord:
            pool = statement_pool(shard.engine)
            if pool is not None:
                await shard.ensure_ready(write=False)
                row = await pool.fetchrow(
                    _GET_PG,
                    *(p.pseudonym, collection, key),
                    unavailable=shard.unavailable,
                )
                return self._found(subject_id, p, shard, collection, key, row)
            stmt = (
                select(
                    subjects.c.state, records.c.version, records.c.content_sha256, records.c.data
                )
                .select_from(
                    subjects.outerjoin(
                        records,
                        and_(
                            records.c.pseudonym == subjects.c.pseudonym,
                            records.c.collection == collection,
                            records.c.key == key,
                        ),
                    )
                )
                .where(subjects.c.pseudonym == p.pseudonym)
            )
            async with shard.read() as conn:
                row = (await conn.execute(stmt)).first()
            return self._found(subject_id, p, shard, collection, key, row)

        return await self.on_home(subject_id, get_on, writing=False)

    def _found(
        self, subject_id: str, p: Placement, shard: Shard, collection: str, key: str, row: Any
    ) -> StoredRecord:
        """A read's answer from its row (state, version, content_sha256, data)."""
        refusal = _refusal(shard.name, None if row is None else row[0], writing=False)
        if refusal is not None:
            raise refusal
        if row[1] is None:
            raise RecordNotFound()
        return self._record(subject_id, p, shard, collection, key, row[1], row[2], row[3].encode())

    async def delete(
        self,
        subject_id: str,
        collection: str,
        key: str,
        actor: Actor,
        *,
        if_match: int | None = None,
    ) -> None:
        validate_record_address(collection, key)

        async def delete_on(p: Placement, shard: Shard) -> None:
            where = and_(
                records.c.pseudonym == p.pseudonym,
                records.c.collection == collection,
                records.c.key == key,
            )
            async with shard.write() as conn:
                await self._fence(conn, shard, p.pseudonym)
                stmt = delete(records).where(where)
                if if_match is not None:
                    stmt = stmt.where(records.c.version == if_match)
                row = (await conn.execute(stmt.returning(records.c.version))).first()
                if row is None:
                    current = (
                        await conn.execute(select(records.c.version).where(where))
                    ).scalar_one_or_none()
                    # A precondition on a missing record fails too (RFC 9110 13.1.1), as on PUT.
                    if if_match is not None:
                        raise VersionMismatch(if_match, current)
                    raise RecordNotFound()
                await append_entry(
                    conn,
                    shard,
                    events.RECORD_DELETED,
                    actor,
                    subject=p.pseudonym,
                    jurisdiction=p.jurisdiction,
                    record=self.pseudonyms.record(subject_id, collection, key),
                )

        await self.on_home(subject_id, delete_on, writing=False)

    async def list(
        self,
        subject_id: str,
        *,
        collection: str | None = None,
        limit: int = 50,
        after: tuple[str, str] | None = None,
    ) -> RecordPage:
        if collection is not None:
            validate_collection(collection)

        async def list_on(p: Placement, shard: Shard) -> RecordPage:
            stmt = (
                select(*_LISTED)
                .where(records.c.pseudonym == p.pseudonym)
                .order_by(records.c.collection, records.c.key)
                .limit(limit + 1)
            )
            if collection is not None:
                stmt = stmt.where(records.c.collection == collection)
            if after is not None:
                stmt = stmt.where(tuple_(records.c.collection, records.c.key) > tuple_(*after))
            async with shard.read() as conn:
                await self._check_home(conn, shard, p.pseudonym)
                rows = (await conn.execute(stmt)).all()
            items = self._records(subject_id, p, shard, rows[:limit])
            more = len(rows) > limit
            return RecordPage(items, (items[-1].collection, items[-1].key) if more else None)

        return await self.on_home(subject_id, list_on, writing=False)

    def _records(
        self,
        subject_id: str,
        p: Placement,
        shard: Shard,
        rows: Sequence[Row[Any, Any, Any, Any, Any]],
    ) -> builtins.list[StoredRecord]:  # ``list`` is also a method of this class
        return [
            self._record(
                subject_id,
                p,
                shard,
                r.collection,
                r.key,
                r.version,
                r.content_sha256,
                r.data.encode(),
            )
            for r in rows
        ]

    async def _check_home(self, conn: AsyncConnection, shard: Shard, pseudonym: str) -> None:
        state = (
            await conn.execute(select(subjects.c.state).where(subjects.c.pseudonym == pseudonym))
        ).scalar_one_or_none()
        refusal = _refusal(shard.name, state, writing=False)
        if refusal is not None:
            raise refusal

    async def export(self, subject_id: str) -> SubjectExport:
        """Every record and lookup key of the subject, read in one snapshot of its home."""

        async def export_on(p: Placement, shard: Shard) -> SubjectExport:
            stmt = (
                select(*_LISTED)
                .where(records.c.pseudonym == p.pseudonym)
                .order_by(records.c.collection, records.c.key)
            )
            keys = select(lookups.c.kind, lookups.c.value).where(lookups.c.pseudonym == p.pseudonym)
            async with shard.read(snapshot=True) as conn:
                await self._check_home(conn, shard, p.pseudonym)
                rows = (await conn.execute(stmt)).all()
                held = {kind: value for kind, value in await conn.execute(keys.order_by("kind"))}
            return SubjectExport(
                self.placement_view(subject_id, p),
                self._records(subject_id, p, shard, rows),
                held,
            )

        return await self.on_home(subject_id, export_on, writing=False)

    # -- counts (shards overview, reports) ---------------------------------------------------

    async def shard_counts(self, shard: Shard) -> tuple[int, int]:
        async with shard.read() as conn:
            n_subjects = (
                await conn.execute(
                    select(func.count())
                    .select_from(subjects)
                    .where(subjects.c.state == SubjectState.HOME)
                )
            ).scalar_one()
            n_records = (await conn.execute(select(func.count()).select_from(records))).scalar_one()
        return int(n_subjects), int(n_records)
