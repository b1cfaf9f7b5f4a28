"""Resolution of a subject's pseudonym to its current placement: cache first, catalog behind."""

from __future__ import annotations

from domicile.shards.cache import PlacementCache
from domicile.shards.catalog import Catalog, Placement
from domicile.shards.states import PlacementState


class Directory:
    def __init__(self, catalog: Catalog, cache: PlacementCache) -> None:
        self.catalog = catalog
        self.cache = cache

    async def resolve(self, pseudonym: str, *, fresh: bool = False) -> Placement | None:
        """The placement, or None if the subject is unknown. ``fresh`` skips the cache."""
        if not fresh:
            cached = await self.cache.get(pseudonym)
            if cached is not None:
                return cached
        placement = await self.catalog.get(pseudonym)
        if placement is None:
            return None
        if placement.state != PlacementState.PENDING:
            await self.cache.put(placement)
        return placement

    async def invalidate(self, pseudonym: str) -> None:
        await self.cache.invalidate(pseudonym)
