"""One shard's residency log, kept in that shard's own database: audit's `LogStore`.

Writers append entries to the log's queue (``audit_pending``) inside their own transactions
(``shards.auditlog``) without touching the tree. The integrator then moves committed entries,
in id order, into the insert-only log (``audit_entries``) with their leaf indices, and stores
every perfect subtree they complete (``audit_nodes``), in one transaction. Proofs and checkpoint
roots are read from those stored nodes: O(log n) lookups, never a rehash of the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit.errors import ProofRangeError
from domicile.audit.events import LogSite
from domicile.audit.merkle import (
    CompactRange,
    NodeColumns,
    NodeId,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    range_node_ids,
)
from domicile.audit.store import Entry, IssuedCheckpoint
from domicile.shards.auditlog import site_of
from domicile.shards.engines import insert_on_conflict, serialize_writers
from domicile.shards.errors import ShardLogUnavailable, ShardUnavailable
from domicile.shards.registry import Shard
from domicile.shards.schema import (
    audit_checkpoints,
    audit_entries,
    audit_nodes,
    audit_pending,
    audit_state,
)

#: Entries integrated per transaction: bounds how long the integrator holds the log's lock.
INTEGRATE_BATCH = 4096
_STATE_ID = 1
#: Key rotation entries are indexed by the ``subject`` column under this tag (their leaves hold
#: no subject): no pseudonym equals it, as pseudonyms are hex.
ROTATION_TAG = "key.rotated"
_ROTATION_LOCK = 0x646F6D2D726F7461  # "dom-rota"


# PostgreSQL runs the log's bulk statements on the transaction's own asyncpg connection: one
# statement per batch (array parameters), and rows as the driver returns them. SQLAlchemy's
# executemany and row objects cost more client CPU per entry than hashing it (bench/RESULTS.md).
_PENDING_PG = "SELECT id, leaf FROM audit_pending ORDER BY id LIMIT $1"
# Exactly the ids read (not "up to the last"): an entry with a lower id may have committed since.
_MOVE_PG = (
    "WITH moved AS (DELETE FROM audit_pending WHERE id = ANY($1::bigint[])"
    " RETURNING id, leaf, subject)"
    " INSERT INTO audit_entries (id, leaf, subject, idx)"
    " SELECT m.id, m.leaf, m.subject, $2::bigint + v.n - 1"
    " FROM unnest($1::bigint[]) WITH ORDINALITY AS v(id, n) JOIN moved AS m ON m.id = v.id"
)
# The hashes travel as one bytea, cut in 32-byte pieces by the server: asyncpg checks every
# element of a bytea[] against an abstract base class, a quarter of integration's client CPU.
_STORE_NODES_PG = (
    "INSERT INTO audit_nodes (level, idx, hash)"
    " SELECT n.level, n.idx, substring($3::bytea FROM n.pos::int * 32 - 31 FOR 32)"
    " FROM unnest($1::smallint[], $2::bigint[]) WITH ORDINALITY AS n(level, idx, pos)"
)
_NODES_PG = (
    "SELECT n.level, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx)"
    " JOIN audit_nodes AS n ON n.level = w.level AND n.idx = w.idx"
)
_ENTRIES_PG = "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"


async def _driver(conn: AsyncConnection) -> asyncpg.Connection | None:
    """The asyncpg connection under ``conn`` on PostgreSQL, else None. Statements sent to it
    run in the transaction SQLAlchemy began, if it began one (it does so at its first
    statement), else each on its own."""
    if conn.dialect.name != "postgresql":
        return None
    raw = (await conn.get_raw_connection()).driver_connection
    assert isinstance(raw, asyncpg.Connection)
    return raw


async def _nodes(conn: AsyncConnection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    raw = await _driver(conn)
    if raw is not None:
        levels = [level for level, _ in wanted]
        indices = [idx for _, idx in wanted]
        return {(r[0], r[1]): r[2] for r in await raw.fetch(_NODES_PG, levels, indices)}
    # OR of key lookups, not a row-value IN: SQLite scans the table for the latter.
    rows = await conn.execute(
        select(audit_nodes.c.level, audit_nodes.c.idx, audit_nodes.c.hash).where(
            or_(
                *(
                    and_(audit_nodes.c.level == level, audit_nodes.c.idx == idx)
                    for level, idx in wanted
                )
            )
        )
    )
    return {(r.level, r.idx): bytes(r.hash) for r in rows}


class ShardLogStore:
    """Audit's `LogStore` for one shard's log. A failure of the shard's preparation (a schema
    not there yet, say) passes through as the shard's own error."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.site: LogSite = site_of(shard)

    @property
    def name(self) -> str:
        return self.shard.name

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._reachable(self.shard.read())

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._reachable(self.shard.write())

    @asynccontextmanager
    async def _reachable(
        self, transaction: AbstractAsyncContextManager[AsyncConnection]
    ) -> AsyncIterator[AsyncConnection]:
        """The shard's unavailability leaves the store as audit's `LogUnavailable`, one that is
        still the shard's error (`ShardLogUnavailable`) for the callers that answer it."""
        try:
            async with transaction as conn:
                yield conn
        except ShardUnavailable as exc:
            raise ShardLogUnavailable(self.name, exc.fault) from exc

    # -- integration ---------------------------------------------------------------------------

    async def has_pending(self) -> bool:
        """Cheap unlocked probe, so an idle log never takes the write lock."""
        async with self._read() as conn:
            row = await conn.execute(
                # By the primary key: a queue's statistics are often stale, and its heap holds
                # the dead rows of entries already integrated until vacuum.
                select(audit_pending.c.id).order_by(audit_pending.c.id).limit(1)
            )
            return row.first() is not None

    async def integrate(self, batch: int = INTEGRATE_BATCH) -> int:
        """Move every committed entry of the queue into the log with the next index, in id
        order, and store the tree nodes they complete. Returns the tree size. Safe to run from
        many processes."""
        while True:
            async with self._write() as conn:
                size = await self._lock_state(conn)  # also begins the transaction
                raw = await _driver(conn)
                pending: Sequence[Any]
                if raw is not None:
                    pending = await raw.fetch(_PENDING_PG, batch)
                else:
                    pending = (
                        await conn.execute(
                            select(audit_pending.c.id, audit_pending.c.leaf)
                            .order_by(audit_pending.c.id)
                            .limit(batch)
                        )
                    ).all()
                if not pending:
                    return size
                tree = CompactRange.from_nodes(size, await _nodes(conn, range_node_ids(size)))
                nodes = NodeColumns()
                tree.extend((leaf_hash(bytes(leaf)) for _, leaf in pending), nodes)
                if raw is not None:
                    moved = await raw.execute(_MOVE_PG, [row_id for row_id, _ in pending], size)
                    if moved != f"INSERT 0 {len(pending)}":  # the nodes would not match the log
                        raise RuntimeError(f"log {self.name}: queued entries vanished: {moved}")
                    await raw.execute(
                        _STORE_NODES_PG, nodes.levels, nodes.indices, b"".join(nodes.hashes)
                    )
                else:  # SQLite: this write transaction excludes every other writer
                    queued = audit_pending.c.id <= pending[-1][0]
                    index = size - 1 + func.row_number().over(order_by=audit_pending.c.id)
                    await conn.execute(
                        insert(audit_entries).from_select(
                            ["id", "leaf", "subject", "idx"],
                            select(
                                audit_pending.c.id,
                                audit_pending.c.leaf,
                                audit_pending.c.subject,
                                index,
                            ).where(queued),
                        )
                    )
                    await conn.execute(delete(audit_pending).where(queued))
                    await conn.execute(
                        insert(audit_nodes),
                        [
                            {"level": level, "idx": idx, "hash": digest}
                            for level, idx, digest in zip(
                                nodes.levels, nodes.indices, nodes.hashes, strict=True
                            )
                        ],
                    )
                await conn.execute(update(audit_state).values(size=tree.size))
            if len(pending) < batch:
                return tree.size

    async def _lock_state(self, conn: AsyncConnection) -> int:
        # The row is created on first use rather than by the migration, so an emptied database
        # (TRUNCATE) is still a valid empty log.
        await conn.execute(
            insert_on_conflict(conn, audit_state)
            .values(id=_STATE_ID, size=0)
            .on_conflict_do_nothing(index_elements=[audit_state.c.id])
        )
        size = await conn.scalar(
            select(audit_state.c.size).where(audit_state.c.id == _STATE_ID).with_for_update()
        )
        return int(size or 0)

    # -- reads ---------------------------------------------------------------------------------

    async def size(self) -> int:
        """The integrated tree size."""
        async with self._read() as conn:
            return await self._size(conn)

    @staticmethod
    async def _size(conn: AsyncConnection) -> int:
        size = await conn.scalar(select(audit_state.c.size).where(audit_state.c.id == _STATE_ID))
        return int(size or 0)

    async def entries(self, start: int, end: int) -> list[Entry]:
        """Integrated entries with ``start <= index < end``."""
        return [Entry(index, leaf) for index, leaf in await self.leaves(start, end)]

    async def leaves(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """``entries`` as plain (index, leaf) pairs: what the verifier reads every entry
        through, at a third of the client CPU of building objects for them."""
        async with self._read() as conn:
            raw = await _driver(conn)
            if raw is not None:
                return [(r[0], r[1]) for r in await raw.fetch(_ENTRIES_PG, start, end)]
            rows = await conn.execute(
                select(audit_entries.c.idx, audit_entries.c.leaf)
                .where(audit_entries.c.idx >= start, audit_entries.c.idx < end)
                .order_by(audit_entries.c.idx)
            )
            # fetchall: iterating the result fetches row by row, a third of a verifier's time.
            return [(idx, bytes(leaf)) for idx, leaf in rows.fetchall()]

    async def subject_entries(self, pseudonym: str, below: int) -> list[Entry]:
        """The subject's integrated entries with index below ``below``."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(audit_entries.c.idx, audit_entries.c.leaf)
                .where(audit_entries.c.subject == pseudonym, audit_entries.c.idx < below)
                .order_by(audit_entries.c.idx)
            )
            return [Entry(r.idx, bytes(r.leaf)) for r in rows]

    async def _check_size(self, conn: AsyncConnection, size: int, what: str) -> None:
        current = await self._size(conn)
        if size > current:
            raise ProofRangeError(f"{what} {size} exceeds the log's size {current}")

    async def root(self, size: int) -> bytes:
        async with self._read() as conn:
            await self._check_size(conn, size, "tree size")
            ids = range_node_ids(size)
            return CompactRange.from_nodes(size, await _nodes(conn, ids)).root()

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise ProofRangeError(f"index {index} is not below tree_size {size}")
        plan = inclusion_plan(index, size)
        async with self._read() as conn:
            await self._check_size(conn, size, "tree_size")
            return plan.assemble(await _nodes(conn, plan.node_ids))

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second:
            raise ProofRangeError(f"need 0 < first <= second, got first={first} second={second}")
        plan = consistency_plan(first, second)
        async with self._read() as conn:
            await self._check_size(conn, second, "second")
            return plan.assemble(await _nodes(conn, plan.node_ids))

    # -- checkpoints ---------------------------------------------------------------------------

    async def checkpoints(self) -> list[IssuedCheckpoint]:
        """Every checkpoint issued, smallest first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    audit_checkpoints.c.size, audit_checkpoints.c.root, audit_checkpoints.c.note
                ).order_by(audit_checkpoints.c.size)
            )
            return [IssuedCheckpoint(r.size, bytes(r.root), r.note) for r in rows]

    async def latest_checkpoint(self) -> IssuedCheckpoint | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(
                        audit_checkpoints.c.size, audit_checkpoints.c.root, audit_checkpoints.c.note
                    )
                    .order_by(audit_checkpoints.c.size.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else IssuedCheckpoint(row.size, bytes(row.root), row.note)

    async def checkpoint_at(self, size: int) -> IssuedCheckpoint | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(audit_checkpoints.c.root, audit_checkpoints.c.note).where(
                        audit_checkpoints.c.size == size
                    )
                )
            ).first()
        return None if row is None else IssuedCheckpoint(size, bytes(row.root), row.note)

    async def keep_checkpoint(self, checkpoint: IssuedCheckpoint) -> IssuedCheckpoint:
        size, root, note = checkpoint.size, checkpoint.root, checkpoint.note
        async with self._write() as conn:
            await conn.execute(
                insert_on_conflict(conn, audit_checkpoints)
                .values(size=size, root=root, note=note, created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=[audit_checkpoints.c.size])
            )
            stored = await conn.scalar(
                select(audit_checkpoints.c.note).where(audit_checkpoints.c.size == size)
            )
        return IssuedCheckpoint(size, root, stored or note)

    # -- key rotations -------------------------------------------------------------------------

    async def key_rotations(self) -> list[tuple[int | None, bytes]]:
        async with self._read() as conn:
            return await self._key_rotations(conn)

    @staticmethod
    async def _key_rotations(conn: AsyncConnection) -> list[tuple[int | None, bytes]]:
        integrated = await conn.execute(
            select(audit_entries.c.idx, audit_entries.c.leaf)
            .where(audit_entries.c.subject == ROTATION_TAG)
            .order_by(audit_entries.c.idx)
        )
        queued = await conn.execute(
            select(audit_pending.c.leaf)
            .where(audit_pending.c.subject == ROTATION_TAG)
            .order_by(audit_pending.c.id)
        )
        found: list[tuple[int | None, bytes]] = [(r.idx, bytes(r.leaf)) for r in integrated]
        return found + [(None, bytes(r.leaf)) for r in queued]

    async def append_key_rotation(self, leaf: bytes, after: int) -> bool:
        async with self._write() as conn:
            await serialize_writers(conn, _ROTATION_LOCK)
            if len(await self._key_rotations(conn)) != after:
                return False
            await conn.execute(insert(audit_pending).values(leaf=leaf, subject=ROTATION_TAG))
        return True
