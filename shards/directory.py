"""The directory: each subject's placement (pseudonym -> home shard), cache first, catalog behind.

Every placement change goes through ``Directory``, which invalidates the caches as part of it,
after the catalog write: a router that re-reads the entry after the invalidation reads the new
one (invalidating first would let a read in between cache the old entry again, for up to the
cache's TTL). The invalidation also runs when the write fails, which may have committed before
the failure reached us. A read that began before the write and caches its answer after the
invalidation is caught by the shard's fence, like any stale entry. Registration's ``reserve``
and ``activate`` invalidate nothing: a pending entry is never cached, so neither changes what a
cache can hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from domicile.shards.cache import PlacementCache
from domicile.shards.catalog import Catalog
from domicile.shards.move_journal import MoveRow
from domicile.shards.placements import Placement, PlacementTable
from domicile.shards.states import PlacementState


class Directory:
    def __init__(self, catalog: Catalog, cache: PlacementCache) -> None:
        self._table = PlacementTable(catalog)
        self._cache = cache

    # -- reads -------------------------------------------------------------------------------

    async def resolve(self, pseudonym: str, *, fresh: bool = False) -> Placement | None:
        """The placement, or None if the subject is unknown. ``fresh`` skips the cache."""
        if not fresh:
            cached = await self._cache.get(pseudonym)
            if cached is not None:
                return cached
        placement = await self._table.get(pseudonym)
        if placement is None:
            return None
        if placement.state != PlacementState.PENDING:
            await self._cache.put(placement)
        return placement

    async def read(self, pseudonym: str) -> Placement | None:
        """The catalog's entry as it is now, pending ones included; the cache is neither read
        nor filled."""
        return await self._table.get(pseudonym)

    async def invalidate(self, pseudonym: str) -> None:
        """Drop a cache entry a shard has shown to be stale (it is not the subject's home)."""
        await self._cache.invalidate(pseudonym)

    async def count_by_shard(self) -> dict[str, int]:
        return await self._table.count_by_shard()

    async def placement_counts(self) -> dict[tuple[str, str], int]:
        """Placed subjects per (jurisdiction, shard)."""
        return await self._table.placement_counts()

    async def placements_on(
        self, jurisdiction: str, shard: str, *, after: str = "", limit: int = 1000
    ) -> list[Placement]:
        """One page, in pseudonym order, of the placed subjects of ``jurisdiction`` on ``shard``."""
        return await self._table.placements_on(jurisdiction, shard, after=after, limit=limit)

    # -- changes -----------------------------------------------------------------------------

    async def reserve(self, pseudonym: str, jurisdiction: str, shard: str) -> Placement:
        """A new subject's pending placement, or the one a concurrent or earlier attempt made."""
        return await self._table.reserve(pseudonym, jurisdiction, shard)

    async def activate(self, pseudonym: str) -> bool:
        """Make a pending placement visible, once the subject exists on its shard; whether this
        call did (of concurrent registrations of one subject, exactly one does)."""
        return await self._table.activate(pseudonym)

    async def reserve_many(self, wanted: Sequence[tuple[str, str, str]]) -> dict[str, Placement]:
        """``reserve`` for many (pseudonym, jurisdiction, shard) at once (a bulk import); every
        one's entry, new or not."""
        return await self._table.reserve_many(wanted)

    async def activate_many(self, pseudonyms: Sequence[str]) -> set[str]:
        """``activate`` for many at once; returns those this call made active."""
        return await self._table.activate_many(pseudonyms)

    async def remove(self, pseudonym: str) -> None:
        """Forget an erased subject's placement."""
        try:
            await self._table.remove(pseudonym)
        finally:
            await self._cache.invalidate(pseudonym)

    async def switch(
        self,
        batch: Sequence[MoveRow],
        *,
        owner: str,
        lease: timedelta,
        details: Mapping[str, tuple[int, str]] | None = None,
    ) -> set[str]:
        """A move's switch: each subject's placement compare-and-swapped from the move's source
        to its target and the move journaled switched, atomically (see
        ``PlacementTable.switch``). Returns the ids switched; raises ``LeaseLost`` if ``owner``
        no longer holds them all. Invalidated even then: some may have switched."""
        try:
            return await self._table.switch(batch, owner=owner, lease=lease, details=details)
        finally:
            await self._cache.invalidate_many([m.pseudonym for m in batch])
