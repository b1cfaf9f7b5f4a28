"""The move journal, kept in the catalog: one row per subject move, advanced step by step by
``shards.moves`` so that a crashed run can be resumed or rolled back.

Every transition is a compare-and-swap on (owner, state), so a run that lost its lease to
another can never advance a move behind the new owner's back. The switch itself, which changes
the subject's placement, belongs to the directory (``Directory.switch``).

Reached through a ``MoveJournal`` over the process's ``Catalog`` (``Runtime.move_journal``;
a ``Mover`` holds the same one).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import directory, moves
from domicile.shards.engines import insert_on_conflict
from domicile.shards.errors import CatalogUnavailable
from domicile.shards.states import MoveState, PlacementState

# The journal's hot steps on PostgreSQL: one prepared statement each, through the statement
# pool (no transaction block: a statement of CTEs is atomic). Each answers one row of arrays.
# States are the vocabulary's own values, never input.
_PLAN_PG = f"""
WITH plan AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])
        AS p(id, pseudonym, jurisdiction, from_shard, to_shard, placement_version)
), current AS (  -- row locks serialise planners with switches
    SELECT d.pseudonym FROM directory d JOIN plan p ON p.pseudonym = d.pseudonym
    WHERE d.state = '{PlacementState.ACTIVE}' AND d.shard = p.from_shard
      AND d.placement_version = p.placement_version
    FOR UPDATE OF d
), planned AS (  -- the partial unique index refuses a second unfinished move of a subject
    INSERT INTO moves (id, pseudonym, jurisdiction, from_shard, to_shard, placement_version,
                       state, reason, owner, lease_until, created_at, updated_at)
    SELECT p.id, p.pseudonym, p.jurisdiction, p.from_shard, p.to_shard, p.placement_version,
           '{MoveState.PLANNED}', $7, $8, $9, $10, $10
    FROM plan p WHERE p.pseudonym IN (SELECT pseudonym FROM current)
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT coalesce(array_agg(id), '{{}}') FROM planned
"""  # noqa: S608
_ADVANCE_PG = """
WITH advanced AS (
    UPDATE moves m
    SET state = $4, updated_at = $5, error = $6, lease_until = $7, finished_at = $8,
        owner = CASE WHEN $8::timestamptz IS NULL THEN m.owner END,
        records = coalesce(d.records, m.records), digest = coalesce(d.digest, m.digest)
    FROM unnest($1::text[]) AS i(id)
         LEFT JOIN unnest($9::text[], $10::int[], $11::text[]) AS d(id, records, digest)
         ON d.id = i.id
    WHERE m.id = i.id AND m.owner = $2 AND m.state = ANY($3::text[])
    RETURNING m.id
)
SELECT coalesce(array_agg(id), '{}') FROM advanced
"""


@dataclass(frozen=True)
class MovePlan:
    pseudonym: str
    jurisdiction: str
    from_shard: str
    to_shard: str
    placement_version: int


@dataclass(frozen=True)
class MoveRow:
    id: str
    pseudonym: str
    jurisdiction: str
    from_shard: str
    to_shard: str
    placement_version: int
    state: MoveState
    reason: str
    records: int | None
    digest: str | None
    error: str | None
    owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def held(self, now: datetime) -> bool:
        """Whether a run holds the move now (not released, lease not expired)."""
        if self.owner is None or self.lease_until is None:
            return False
        lease = self.lease_until
        return (lease if lease.tzinfo else lease.replace(tzinfo=UTC)) > now


def _move(r: Row[Any]) -> MoveRow:
    return MoveRow(
        r.id,
        r.pseudonym,
        r.jurisdiction,
        r.from_shard,
        r.to_shard,
        r.placement_version,
        MoveState(r.state),
        r.reason,
        r.records,
        r.digest,
        r.error,
        r.owner,
        r.lease_until,
        r.created_at,
        r.updated_at,
        r.finished_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def record_details(
    conn: AsyncConnection, details: Mapping[str, tuple[int, str]], ids: AbstractSet[str]
) -> None:
    """Journal (records, digest) of the moves ``ids`` that ``details`` has, in the caller's
    transaction (the general path; PostgreSQL's statements do it themselves)."""
    params = [
        {"b_id": i, "b_records": n, "b_digest": d} for i, (n, d) in details.items() if i in ids
    ]
    if params:
        await conn.execute(
            update(moves)
            .where(moves.c.id == bindparam("b_id"))
            .values(records=bindparam("b_records"), digest=bindparam("b_digest")),
            params,
        )


class MoveJournal:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def plan(
        self, plans: Sequence[MovePlan], *, reason: str, owner: str, lease: timedelta
    ) -> list[MoveRow]:
        """Journal a move for each plan whose directory entry is still what the plan saw (same
        shard and placement version) and that has no unfinished move; returns those created."""
        if not plans:
            return []
        now = _now()
        pool = self._catalog.statements
        if pool is not None:
            ids = [secrets.token_hex(16) for _ in plans]
            row = await pool.fetchrow(
                _PLAN_PG,
                ids,
                [p.pseudonym for p in plans],
                [p.jurisdiction for p in plans],
                [p.from_shard for p in plans],
                [p.to_shard for p in plans],
                [p.placement_version for p in plans],
                reason,
                owner,
                now + lease,
                now,
                unavailable=CatalogUnavailable,
            )
            assert row is not None
            created = set(row[0])
            return [
                MoveRow(
                    i,
                    p.pseudonym,
                    p.jurisdiction,
                    p.from_shard,
                    p.to_shard,
                    p.placement_version,
                    MoveState.PLANNED,
                    reason,
                    records=None,
                    digest=None,
                    error=None,
                    owner=owner,
                    lease_until=now + lease,
                    created_at=now,
                    updated_at=now,
                    finished_at=None,
                )
                for i, p in zip(ids, plans, strict=True)
                if i in created
            ]
        async with self._catalog.transaction(write=True) as conn:
            # SQLite writers are serialised anyway.
            current = {
                r.pseudonym: (r.shard, r.placement_version)
                for r in await conn.execute(
                    select(directory.c.pseudonym, directory.c.shard, directory.c.placement_version)
                    .where(
                        directory.c.pseudonym.in_([p.pseudonym for p in plans]),
                        directory.c.state == PlacementState.ACTIVE,
                    )
                    .with_for_update()
                )
            }
            rows = [
                {
                    "id": secrets.token_hex(16),
                    "pseudonym": p.pseudonym,
                    "jurisdiction": p.jurisdiction,
                    "from_shard": p.from_shard,
                    "to_shard": p.to_shard,
                    "placement_version": p.placement_version,
                    "state": MoveState.PLANNED,
                    "reason": reason,
                    "owner": owner,
                    "lease_until": now + lease,
                    "created_at": now,
                    "updated_at": now,
                }
                for p in plans
                if current.get(p.pseudonym) == (p.from_shard, p.placement_version)
            ]
            if not rows:
                return []
            # The partial unique index refuses a second unfinished move of the same subject.
            stmt = insert_on_conflict(conn, moves).on_conflict_do_nothing().returning(*moves.c)
            return [_move(r) for r in await conn.execute(stmt, rows)]

    async def advance(
        self,
        ids: Collection[str],
        *,
        owner: str,
        expect: MoveState | Collection[MoveState],
        to: MoveState,
        lease: timedelta,
        error: str | None = None,
        details: Mapping[str, tuple[int, str]] | None = None,
    ) -> set[str]:
        """Move the journal of ``ids`` from ``expect`` to ``to`` where ``owner`` still holds
        them; ``details`` records (records, digest) per move. Returns the ids advanced."""
        if not ids:
            return set()
        expected = [expect] if isinstance(expect, MoveState) else list(expect)
        now = _now()
        values: dict[str, Any] = {"state": to, "updated_at": now, "error": error}
        if to.finished:
            values.update(finished_at=now, owner=None, lease_until=None)
        else:
            values["lease_until"] = now + lease
        pool = self._catalog.statements
        if pool is not None:
            given = {i: d for i, d in (details or {}).items() if i in ids}
            row = await pool.fetchrow(
                _ADVANCE_PG,
                list(ids),
                owner,
                expected,
                to,
                now,
                error,
                values.get("lease_until"),
                values.get("finished_at"),
                list(given),
                [n for n, _ in given.values()],
                [d for _, d in given.values()],
                unavailable=CatalogUnavailable,
            )
            assert row is not None
            return set(row[0])
        async with self._catalog.transaction(write=True) as conn:
            advanced = set(
                (
                    await conn.execute(
                        update(moves)
                        .where(
                            moves.c.id.in_(list(ids)),
                            moves.c.owner == owner,
                            moves.c.state.in_(expected),
                        )
                        .values(**values)
                        .returning(moves.c.id)
                    )
                ).scalars()
            )
            await record_details(conn, details or {}, advanced)
        return advanced

    async def claim(
        self,
        *,
        owner: str,
        lease: timedelta,
        dead_owners: Collection[str] = (),
        ids: Collection[str] | None = None,
        jurisdiction: str | None = None,
    ) -> list[MoveRow]:
        """Take over unfinished moves nobody holds: released, lease expired, or held by a dead
        process. Returns the moves now held by ``owner``."""
        now = _now()
        stmt = (
            update(moves)
            .where(
                moves.c.finished_at.is_(None),
                or_(
                    moves.c.owner.is_(None),
                    moves.c.lease_until < now,
                    moves.c.owner.in_(list(dead_owners)),
                ),
            )
            .values(owner=owner, lease_until=now + lease, updated_at=now)
            .returning(*moves.c)
        )
        if ids is not None:
            stmt = stmt.where(moves.c.id.in_(list(ids)))
        if jurisdiction is not None:
            stmt = stmt.where(moves.c.jurisdiction == jurisdiction)
        async with self._catalog.transaction(write=True) as conn:
            return [_move(r) for r in await conn.execute(stmt)]

    async def release(self, ids: Collection[str], *, owner: str, error: str | None = None) -> None:
        """Let go of unfinished moves (interrupted, or stopped by an error) for a later resume."""
        if not ids:
            return
        values: dict[str, Any] = {"owner": None, "lease_until": None, "updated_at": _now()}
        if error is not None:
            values["error"] = error
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(
                update(moves)
                .where(moves.c.id.in_(list(ids)), moves.c.owner == owner)
                .values(**values)
            )

    async def unfinished_owners(self) -> set[str]:
        async with self._catalog.transaction(write=False) as conn:
            rows = await conn.execute(
                select(moves.c.owner)
                .where(moves.c.finished_at.is_(None), moves.c.owner.is_not(None))
                .distinct()
            )
            return {str(owner) for owner in rows.scalars()}

    async def get(self, move_id: str) -> MoveRow | None:
        async with self._catalog.transaction(write=False) as conn:
            row = (await conn.execute(select(moves).where(moves.c.id == move_id))).first()
        return None if row is None else _move(row)

    async def unfinished_of(self, pseudonym: str) -> MoveRow | None:
        """The subject's unfinished move, if it has one (it has at most one)."""
        async with self._catalog.transaction(write=False) as conn:
            row = (
                await conn.execute(
                    select(moves).where(
                        moves.c.pseudonym == pseudonym, moves.c.finished_at.is_(None)
                    )
                )
            ).first()
        return None if row is None else _move(row)

    async def count_by_state(self) -> dict[str, int]:
        """How many moves the journal holds in each state, finished ones included."""
        stmt = select(moves.c.state, func.count()).group_by(moves.c.state)
        async with self._catalog.transaction(write=False) as conn:
            return {state: int(n) for state, n in await conn.execute(stmt)}

    async def latest(
        self, *, unfinished_only: bool = True, limit: int = 100, ids: Collection[str] = ()
    ) -> list[MoveRow]:
        """The latest moves, newest first: unfinished ones only unless told otherwise, and only
        ``ids`` when given."""
        stmt = select(moves).order_by(moves.c.created_at.desc(), moves.c.id).limit(limit)
        if unfinished_only:
            stmt = stmt.where(moves.c.finished_at.is_(None))
        if ids:
            stmt = stmt.where(moves.c.id.in_(list(ids)))
        async with self._catalog.transaction(write=False) as conn:
            return [_move(r) for r in await conn.execute(stmt)]
