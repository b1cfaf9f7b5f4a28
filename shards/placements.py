"""The directory's table in the catalog: pseudonym -> (jurisdiction, home shard, placement
version, state), the version making every change a compare-and-swap.

Only ``shards.directory.Directory`` holds a ``PlacementTable``: every placement change goes
through the directory, which invalidates the caches as part of it. Everything else reads
placements through the directory too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import directory, moves
from domicile.shards.engines import insert_on_conflict
from domicile.shards.errors import CatalogUnavailable, LeaseLost
from domicile.shards.move_journal import MoveRow, record_details
from domicile.shards.states import MoveState, PlacementState


@dataclass(frozen=True)
class Placement:
    pseudonym: str
    jurisdiction: str
    shard: str
    version: int
    state: PlacementState


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
# The switch on PostgreSQL: one prepared statement through the statement pool (no transaction
# block: a statement of CTEs is atomic), answering one row. States are the vocabulary's own
# values, never input.
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


def _now() -> datetime:
    return datetime.now(UTC)


def _placement(row: Sequence[Any]) -> Placement:
    pseudonym, jurisdiction, shard, version, state = row
    return Placement(pseudonym, jurisdiction, shard, version, PlacementState(state))


class PlacementTable:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def get(self, pseudonym: str) -> Placement | None:
        """A directory cache miss lands here: on PostgreSQL one prepared statement, as the
        shard's point read, without SQLAlchemy's transaction around it."""
        pool = self._catalog.statements
        row: Any
        if pool is not None:
            row = await pool.fetchrow(_GET_PG, pseudonym, unavailable=CatalogUnavailable)
        else:
            async with self._catalog.transaction(write=False) as conn:
                row = (
                    await conn.execute(select(*_PLACEMENT).where(_PLACEMENT[0] == pseudonym))
                ).first()
        return None if row is None else _placement(row)

    async def reserve(self, pseudonym: str, jurisdiction: str, shard: str) -> Placement:
        """Insert a pending placement, or return the one a concurrent or earlier attempt made."""
        now = _now()
        try:
            async with self._catalog.transaction(write=True) as conn:
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

    async def reserve_many(self, wanted: Sequence[tuple[str, str, str]]) -> dict[str, Placement]:
        """``reserve`` for many (pseudonym, jurisdiction, shard) in one transaction; returns
        each one's entry, which is another's where a concurrent or earlier attempt made it."""
        if not wanted:
            return {}
        now = _now()
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(
                insert_on_conflict(conn, directory).on_conflict_do_nothing(
                    index_elements=[directory.c.pseudonym]
                ),
                [
                    {
                        "pseudonym": pseudonym,
                        "jurisdiction": jurisdiction,
                        "shard": shard,
                        "placement_version": 1,
                        "state": PlacementState.PENDING,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for pseudonym, jurisdiction, shard in wanted
                ],
            )
            rows = await conn.execute(
                select(*_PLACEMENT).where(_PLACEMENT[0].in_([p for p, _, _ in wanted]))
            )
            return {row[0]: _placement(row) for row in rows}

    async def activate(self, pseudonym: str) -> bool:
        """Whether this call made the pending placement active (concurrent callers: one)."""
        async with self._catalog.transaction(write=True) as conn:
            done = await conn.execute(
                update(directory)
                .where(
                    directory.c.pseudonym == pseudonym,
                    directory.c.state == PlacementState.PENDING,
                )
                .values(state=PlacementState.ACTIVE, updated_at=_now())
            )
        return done.rowcount == 1

    async def activate_many(self, pseudonyms: Sequence[str]) -> set[str]:
        """``activate`` for many in one statement; returns those this call made active."""
        if not pseudonyms:
            return set()
        async with self._catalog.transaction(write=True) as conn:
            done = await conn.execute(
                update(directory)
                .where(
                    directory.c.pseudonym.in_(pseudonyms),
                    directory.c.state == PlacementState.PENDING,
                )
                .values(state=PlacementState.ACTIVE, updated_at=_now())
                .returning(directory.c.pseudonym)
            )
            return set(done.scalars())

    async def remove(self, pseudonym: str) -> None:
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(delete(directory).where(directory.c.pseudonym == pseudonym))

    async def switch(
        self,
        batch: Sequence[MoveRow],
        *,
        owner: str,
        lease: timedelta,
        details: Mapping[str, tuple[int, str]] | None = None,
    ) -> set[str]:
        """Compare-and-swap each subject's placement from (from_shard, version) to (to_shard,
        version + 1), and journal the moves as switched, atomically; ``details`` records
        (records, digest) per move. Returns the ids switched; raises ``LeaseLost`` if ``owner``
        no longer holds them all (on PostgreSQL those it still holds are switched: each move
        is its own)."""
        if not batch:
            return set()
        source, target = batch[0].from_shard, batch[0].to_shard
        assert all(m.from_shard == source and m.to_shard == target for m in batch)
        now = _now()
        given = dict(details or {})
        pool = self._catalog.statements
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
        async with self._catalog.transaction(write=True) as conn:
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
            await record_details(conn, given, journaled)
            if len(journaled) != len(ids):
                raise LeaseLost()  # rolls the directory switch back with it
        return journaled

    async def count_by_shard(self) -> dict[str, int]:
        async with self._catalog.transaction(write=False) as conn:
            rows = await conn.execute(
                select(directory.c.shard, func.count())
                .where(directory.c.state != PlacementState.PENDING)
                .group_by(directory.c.shard)
            )
            return {shard: count for shard, count in rows}

    async def placement_counts(self) -> dict[tuple[str, str], int]:
        """Placed subjects per (jurisdiction, shard)."""
        async with self._catalog.transaction(write=False) as conn:
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
        async with self._catalog.transaction(write=False) as conn:
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
