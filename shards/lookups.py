"""Finding a subject by a lookup key (``POST /v1/lookups/{kind}``): one read of the blind
index in the catalog, the placement (cache first, as every request), and one read of the home
shard, which confirms that the subject holds the value and gives its subject id.

A miss costs the same normalisation and blind index read as a hit and stops there. The shard
read is what makes a stale entry harmless: an entry left by a request that stopped before its
catalog step (a replaced or removed value), or one this process remembers from before the value
changed hands, finds no row; the catalog is then asked afresh. So the blind index entries found
are kept in a small per-process LRU without any invalidation (misses are never kept).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from sqlalchemy import select

from domicile.shards.engines import statement_pool
from domicile.shards.errors import LookupNotFound
from domicile.shards.placements import Placement
from domicile.shards.registry import Shard
from domicile.shards.schema import lookups, subjects
from domicile.shards.states import PlacementState
from domicile.shards.store import RecordStore, SubjectPlacement

_SUBJECT_PG = """
SELECT s.subject_id FROM subjects s JOIN lookups l ON l.pseudonym = s.pseudonym
WHERE s.pseudonym = $1 AND l.kind = $2 AND l.blind = $3
"""


class _Remembered:
    """(kind, blind value) -> pseudonym, for ``ttl`` seconds, the ``capacity`` latest."""

    def __init__(self, capacity: int = 100_000, ttl: float = 300.0) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._capacity, self._ttl = capacity, ttl

    def get(self, kind: str, blind: str) -> str | None:
        entry = self._entries.get((kind, blind))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, kind: str, blind: str, pseudonym: str) -> None:
        self._entries[(kind, blind)] = (time.monotonic() + self._ttl, pseudonym)
        self._entries.move_to_end((kind, blind))
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class LookupFinder:
    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._remembered = _Remembered()

    async def find(self, kind: str, value: str) -> SubjectPlacement:
        candidates = self._store.lookup_keys.candidates(kind, value)
        if len(candidates) == 1:
            [blind] = candidates
            pseudonym = self._remembered.get(kind, blind)
            if pseudonym is not None:
                found = await self._confirmed(kind, {blind: pseudonym}, candidates)
                if found is not None:
                    return found
        index = await self._store.lookup_index.find(kind, list(candidates))
        for blind, pseudonym in index.items():
            self._remembered.put(kind, blind, pseudonym)
        found = await self._confirmed(kind, index, candidates)
        if found is None:
            raise LookupNotFound(kind)
        return found

    async def _confirmed(
        self,
        kind: str,
        index: dict[str, str],
        candidates: dict[str, frozenset[str] | None],
    ) -> SubjectPlacement | None:
        """The placement of the subject of an entry of ``index`` its home shard confirms."""
        store = self._store
        for blind, pseudonym in sorted(index.items()):
            placement = await store.directory.resolve(pseudonym)
            if placement is None or placement.state == PlacementState.PENDING:
                continue
            # A phone number in national form is the subject's only if read in its
            # jurisdiction.
            jurisdictions = candidates[blind]
            if jurisdictions is not None and placement.jurisdiction not in jurisdictions:
                continue
            subject_id = await self._subject_id(placement, kind, blind)
            if subject_id is None:  # a stale cache entry after a move: the catalog's word
                fresh = await store.directory.resolve(pseudonym, fresh=True)
                if fresh is not None and fresh != placement:
                    placement = fresh
                    subject_id = await self._subject_id(placement, kind, blind)
            if subject_id is not None:
                return store.placement_view(subject_id, placement)
        return None

    async def _subject_id(self, placement: Placement, kind: str, blind: str) -> str | None:
        """The subject id of the holder of (kind, blind) on the placement's shard, if it holds
        it. A subject mid-move has its keys on the source until the purge, which drops them
        with the subject id."""
        shard: Shard = self._store.registry[placement.shard]
        args = (placement.pseudonym, kind, blind)
        pool = statement_pool(shard.engine)
        if pool is not None:
            await shard.ensure_ready(write=False)
            row = await pool.fetchrow(_SUBJECT_PG, *args, unavailable=shard.unavailable)
            return None if row is None else row[0]
        stmt = (
            select(subjects.c.subject_id)
            .join(lookups, lookups.c.pseudonym == subjects.c.pseudonym)
            .where(
                subjects.c.pseudonym == args[0], lookups.c.kind == kind, lookups.c.blind == blind
            )
        )
        async with shard.read() as conn:
            subject_id: str | None = (await conn.execute(stmt)).scalar_one_or_none()
        return subject_id
