"""The catalog (control database): the directory of placements and the API keys.

It holds pseudonyms, jurisdictions and shard names only: never a raw subject id, record key or
content (contract, invariant 4).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.shards.catalog_schema import api_keys, directory, moves, shard_migrations
from domicile.shards.engines import create_engine, statement_pool, transaction
from domicile.shards.errors import CatalogUnavailable, LeaseLost
from domicile.shards.states import MigrationStatus, MoveState, PlacementState

SCOPES: frozenset[str] = frozenset(
    {"records:read", "records:write", "subjects:write", "audit:read", "admin"}
)

# A placement's columns, in the order of ``Placement``'s fields.
_PLACEMENT = (
    directory.c.pseudonym,
    directory.c.jurisdiction,
    directory.c.shard,
    directory.c.placement_version,
    directory.c.state,
)
_GET_PG = (
    "SELECT pseudonym, jurisdiction, shard, placement_version, state FROM directory"
    " WHERE pseudonym = $1"
)

# The move journal's hot steps on PostgreSQL: one prepared statement each, through the statement
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
_SWITCH_PG = f"""
WITH held AS (
    SELECT id, pseudonym, placement_version FROM moves
    WHERE id = ANY($1::text[]) AND owner = $2 AND state = '{MoveState.VERIFIED}'
    FOR UPDATE
), switched AS (
    UPDATE directory d
    SET shard = $4, placement_version = d.placement_version + 1, updated_at = $5
    FROM held h
    WHERE d.pseudonym = h.pseudonym AND d.placement_version = h.placement_version
      AND d.shard = $3 AND d.state = '{PlacementState.ACTIVE}'
    RETURNING d.pseudonym
), journaled AS (
    UPDATE moves m SET state = '{MoveState.SWITCHED}', updated_at = $5, lease_until = $6,
        records = coalesce(d.records, m.records), digest = coalesce(d.digest, m.digest)
    FROM held h LEFT JOIN unnest($7::text[], $8::int[], $9::text[]) AS d(id, records, digest)
        ON d.id = h.id
    WHERE m.id = h.id AND h.pseudonym IN (SELECT pseudonym FROM switched)
    RETURNING m.id
)
SELECT (SELECT count(*) FROM held), (SELECT coalesce(array_agg(id), '{{}}') FROM journaled)
"""  # noqa: S608


@dataclass(frozen=True)
class Placement:
    pseudonym: str
    jurisdiction: str
    shard: str
    version: int
    state: PlacementState


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    secret_sha256: str
    revoked: bool

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str  # shown once; only its hash is stored


def _now() -> datetime:
    return datetime.now(UTC)


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random tokens, so a fast hash suffices (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``dmk_<key id>_<secret>`` -> (key id, token); None when it is not shaped like a key."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != "dmk" or not parts[1] or not parts[2]:
        return None
    return parts[1], token


# -- shard operations: moves and migrations ------------------------------------------------


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


@dataclass(frozen=True)
class MigrationEntry:
    id: int
    wave: str
    shard: str
    action: str
    from_revision: str | None
    to_revision: str | None
    status: MigrationStatus
    error: str | None
    started_at: datetime
    finished_at: datetime | None


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


async def _record_details(
    conn: AsyncConnection, details: Mapping[str, tuple[int, str]], ids: AbstractSet[str]
) -> None:
    """Journal (records, digest) of the moves ``ids`` that ``details`` has (SQLite)."""
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


def _placement(row: Sequence[Any]) -> Placement:
    pseudonym, jurisdiction, shard, version, state = row
    return Placement(pseudonym, jurisdiction, shard, version, PlacementState(state))


def _dialect_insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


class Catalog:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def _tx(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self.engine, write=write, unavailable=CatalogUnavailable)

    async def dispose(self) -> None:
        await self.engine.dispose()

    # -- directory ---------------------------------------------------------------------------

    async def get(self, pseudonym: str) -> Placement | None:
        """A directory cache miss lands here: on PostgreSQL one prepared statement, as the
        shard's point read, without SQLAlchemy's transaction around it."""
        pool = statement_pool(self.engine)
        row: Any
        if pool is not None:
            row = await pool.fetchrow(_GET_PG, pseudonym, unavailable=CatalogUnavailable)
        else:
            async with self._tx(write=False) as conn:
                row = (
                    await conn.execute(select(*_PLACEMENT).where(_PLACEMENT[0] == pseudonym))
                ).first()
        return None if row is None else _placement(row)

    async def reserve(self, pseudonym: str, jurisdiction: str, shard: str) -> Placement:
        """Insert a pending placement, or return the one a concurrent or earlier attempt made."""
        now = _now()
        try:
            async with self._tx(write=True) as conn:
                await conn.execute(
                    insert(directory).values(
                        pseudonym=pseudonym,
                        jurisdiction=jurisdiction,
                        shard=shard,
                        placement_version=1,
                        state=PlacementState.PENDING,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            existing = await self.get(pseudonym)
            if existing is None:  # erased in between: try once more
                return await self.reserve(pseudonym, jurisdiction, shard)
            return existing
        return Placement(pseudonym, jurisdiction, shard, 1, PlacementState.PENDING)

    async def activate(self, pseudonym: str) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(
                update(directory)
                .where(
                    directory.c.pseudonym == pseudonym,
                    directory.c.state == PlacementState.PENDING,
                )
                .values(state=PlacementState.ACTIVE, updated_at=_now())
            )

    async def remove(self, pseudonym: str) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(delete(directory).where(directory.c.pseudonym == pseudonym))

    async def count_by_shard(self) -> dict[str, int]:
        async with self._tx(write=False) as conn:
            rows = await conn.execute(
                select(directory.c.shard, func.count())
                .where(directory.c.state != PlacementState.PENDING)
                .group_by(directory.c.shard)
            )
            return {shard: count for shard, count in rows}

    # -- API keys ----------------------------------------------------------------------------

    async def create_key(self, name: str, scopes: AbstractSet[str]) -> NewKey:
        unknown = set(scopes) - SCOPES
        if unknown:
            raise ValueError(f"unknown scope {sorted(unknown)[0]!r}")
        if not scopes:
            raise ValueError("a key needs at least one scope")
        key_id = secrets.token_hex(8)
        secret = f"dmk_{key_id}_{secrets.token_urlsafe(32).replace('_', '-')}"
        async with self._tx(write=True) as conn:
            await conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    secret_sha256=hash_secret(secret),
                    scopes=" ".join(sorted(scopes)),
                    created_at=_now(),
                )
            )
        return NewKey(key_id, secret)

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        if row is None:
            return None
        return ApiKey(
            row.key_id,
            row.name,
            frozenset(row.scopes.split()),
            row.secret_sha256,
            row.revoked_at is not None,
        )

    async def count_keys(self) -> int:
        async with self._tx(write=False) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
            )

    # == shard operations: placement scans, the move journal, the migration journal ===========
    # Used by ``shards.moves``, ``shards.comply`` and ``shards.schema_runner``. Every journal
    # transition is a compare-and-swap on (owner, state), so a run that lost its lease to another
    # can never advance a move behind the new owner's back.

    async def placement_counts(self) -> dict[tuple[str, str], int]:
        """Placed subjects per (jurisdiction, shard)."""
        async with self._tx(write=False) as conn:
            rows = await conn.execute(
                select(directory.c.jurisdiction, directory.c.shard, func.count())
                .where(directory.c.state != PlacementState.PENDING)
                .group_by(directory.c.jurisdiction, directory.c.shard)
            )
            return {(j, shard): int(n) for j, shard, n in rows}

    async def placements_on(
        self, jurisdiction: str, shard: str, *, after: str = "", limit: int = 1000
    ) -> list[Placement]:
        """One page, in pseudonym order, of the placed subjects of ``jurisdiction`` on ``shard``."""
        async with self._tx(write=False) as conn:
            rows = await conn.execute(
                select(directory)
                .where(
                    directory.c.jurisdiction == jurisdiction,
                    directory.c.shard == shard,
                    directory.c.state != PlacementState.PENDING,
                    directory.c.pseudonym > after,
                )
                .order_by(directory.c.pseudonym)
                .limit(limit)
            )
            return [
                Placement(
                    r.pseudonym,
                    r.jurisdiction,
                    r.shard,
                    r.placement_version,
                    PlacementState(r.state),
                )
                for r in rows
            ]

    async def plan_moves(
        self, plans: Sequence[MovePlan], *, reason: str, owner: str, lease: timedelta
    ) -> list[MoveRow]:
        """Journal a move for each plan whose directory entry is still what the plan saw (same
        shard and placement version) and that has no unfinished move; returns those created."""
        if not plans:
            return []
        now = _now()
        pool = statement_pool(self.engine)
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
        async with self._tx(write=True) as conn:
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
            stmt = _dialect_insert(conn)(moves).on_conflict_do_nothing().returning(*moves.c)
            return [_move(r) for r in await conn.execute(stmt, rows)]

    async def advance_moves(
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
        pool = statement_pool(self.engine)
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
        async with self._tx(write=True) as conn:
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
            await _record_details(conn, details or {}, advanced)
        return advanced

    async def switch_placements(
        self,
        batch: Sequence[MoveRow],
        *,
        owner: str,
        lease: timedelta,
        details: Mapping[str, tuple[int, str]] | None = None,
    ) -> set[str]:
        """The directory switch: compare-and-swap each subject's placement from (from_shard,
        version) to (to_shard, version + 1), and journal the moves as switched, atomically;
        ``details`` records (records, digest) per move. Returns the ids switched; raises
        ``LeaseLost`` if ``owner`` no longer holds them all (on PostgreSQL those it still holds
        are switched: each move is its own)."""
        if not batch:
            return set()
        source, target = batch[0].from_shard, batch[0].to_shard
        assert all(m.from_shard == source and m.to_shard == target for m in batch)
        now = _now()
        given = dict(details or {})
        pool = statement_pool(self.engine)
        if pool is not None:
            row = await pool.fetchrow(
                _SWITCH_PG,
                [m.id for m in batch],
                owner,
                source,
                target,
                now,
                now + lease,
                list(given),
                [n for n, _ in given.values()],
                [d for _, d in given.values()],
                unavailable=CatalogUnavailable,
            )
            assert row is not None
            if row[0] != len(batch):
                raise LeaseLost()
            return set(row[1])
        async with self._tx(write=True) as conn:
            switched = set(
                (
                    await conn.execute(
                        update(directory)
                        .where(
                            tuple_(directory.c.pseudonym, directory.c.placement_version).in_(
                                [(m.pseudonym, m.placement_version) for m in batch]
                            ),
                            directory.c.shard == source,
                            directory.c.state == PlacementState.ACTIVE,
                        )
                        .values(
                            shard=target,
                            placement_version=directory.c.placement_version + 1,
                            updated_at=now,
                        )
                        .returning(directory.c.pseudonym)
                    )
                ).scalars()
            )
            ids = [m.id for m in batch if m.pseudonym in switched]
            journaled = set(
                (
                    await conn.execute(
                        update(moves)
                        .where(
                            moves.c.id.in_(ids),
                            moves.c.owner == owner,
                            moves.c.state == MoveState.VERIFIED,
                        )
                        .values(state=MoveState.SWITCHED, updated_at=now, lease_until=now + lease)
                        .returning(moves.c.id)
                    )
                ).scalars()
            )
            await _record_details(conn, given, journaled)
            if len(journaled) != len(ids):
                raise LeaseLost()  # rolls the directory switch back with it
        return journaled

    async def claim_moves(
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
        async with self._tx(write=True) as conn:
            return [_move(r) for r in await conn.execute(stmt)]

    async def release_moves(
        self, ids: Collection[str], *, owner: str, error: str | None = None
    ) -> None:
        """Let go of unfinished moves (interrupted, or stopped by an error) for a later resume."""
        if not ids:
            return
        values: dict[str, Any] = {"owner": None, "lease_until": None, "updated_at": _now()}
        if error is not None:
            values["error"] = error
        async with self._tx(write=True) as conn:
            await conn.execute(
                update(moves)
                .where(moves.c.id.in_(list(ids)), moves.c.owner == owner)
                .values(**values)
            )

    async def unfinished_owners(self) -> set[str]:
        async with self._tx(write=False) as conn:
            rows = await conn.execute(
                select(moves.c.owner)
                .where(moves.c.finished_at.is_(None), moves.c.owner.is_not(None))
                .distinct()
            )
            return {str(owner) for owner in rows.scalars()}

    async def get_move(self, move_id: str) -> MoveRow | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(moves).where(moves.c.id == move_id))).first()
        return None if row is None else _move(row)

    async def unfinished_move(self, pseudonym: str) -> MoveRow | None:
        async with self._tx(write=False) as conn:
            row = (
                await conn.execute(
                    select(moves).where(
                        moves.c.pseudonym == pseudonym, moves.c.finished_at.is_(None)
                    )
                )
            ).first()
        return None if row is None else _move(row)

    async def list_moves(
        self, *, unfinished_only: bool = True, limit: int = 100, ids: Collection[str] = ()
    ) -> list[MoveRow]:
        stmt = select(moves).order_by(moves.c.created_at.desc(), moves.c.id).limit(limit)
        if unfinished_only:
            stmt = stmt.where(moves.c.finished_at.is_(None))
        if ids:
            stmt = stmt.where(moves.c.id.in_(list(ids)))
        async with self._tx(write=False) as conn:
            return [_move(r) for r in await conn.execute(stmt)]

    async def start_migration(
        self,
        *,
        wave: str,
        shard: str,
        action: str,
        from_revision: str | None,
        to_revision: str | None,
    ) -> int:
        async with self._tx(write=True) as conn:
            return int(
                (
                    await conn.execute(
                        insert(shard_migrations)
                        .values(
                            wave=wave,
                            shard=shard,
                            action=action,
                            from_revision=from_revision,
                            to_revision=to_revision,
                            status=MigrationStatus.RUNNING,
                            started_at=_now(),
                        )
                        .returning(shard_migrations.c.id)
                    )
                ).scalar_one()
            )

    async def finish_migration(
        self, entry: int, status: MigrationStatus, error: str | None = None
    ) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(
                update(shard_migrations)
                .where(shard_migrations.c.id == entry)
                .values(status=status, error=error, finished_at=_now())
            )

    async def interrupt_migrations(self, shard: str) -> None:
        """Close journal entries left running by a process that died mid-revision."""
        async with self._tx(write=True) as conn:
            await conn.execute(
                update(shard_migrations)
                .where(
                    shard_migrations.c.shard == shard,
                    shard_migrations.c.status == MigrationStatus.RUNNING,
                )
                .values(
                    status=MigrationStatus.FAILED,
                    error="interrupted (the migrating process stopped)",
                    finished_at=_now(),
                )
            )

    async def migration_journal(
        self, *, shard: str | None = None, limit: int = 50
    ) -> list[MigrationEntry]:
        stmt = select(shard_migrations).order_by(shard_migrations.c.id.desc()).limit(limit)
        if shard is not None:
            stmt = stmt.where(shard_migrations.c.shard == shard)
        async with self._tx(write=False) as conn:
            return [
                MigrationEntry(
                    r.id,
                    r.wave,
                    r.shard,
                    r.action,
                    r.from_revision,
                    r.to_revision,
                    MigrationStatus(r.status),
                    r.error,
                    r.started_at,
                    r.finished_at,
                )
                for r in await conn.execute(stmt)
            ]


def secret_matches(key: ApiKey, token: str) -> bool:
    return hmac.compare_digest(key.secret_sha256, hash_secret(token))
