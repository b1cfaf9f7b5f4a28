"""The health of each part a router depends on (shards, catalog, Redis), in the one form that
``/readyz``, ``/metrics``, ``/v1/shards`` and ``domicile shards status`` report."""

from __future__ import annotations

from dataclasses import dataclass

from domicile.shards.cache import PlacementCache, RedisCache
from domicile.shards.catalog import Catalog
from domicile.shards.faults import Cause, Fault
from domicile.shards.registry import Shard

UP = "up"
READ_ONLY = "read_only"
#: Serving, at a schema revision below the one this version needs (``domicile shards status``
#: and ``/v1/shards`` read the revision): what needs the newer schema fails until upgraded.
BEHIND = "behind"
DOWN = "down"


@dataclass(frozen=True)
class Health:
    state: str  # up | read_only (reads served, writes refused) | behind | down
    cause: str | None = None  # a ``faults.Cause``; None when up
    reason: str | None = None  # a sentence naming the part and what to do

    @property
    def up(self) -> bool:
        return self.state == UP

    def as_json(self) -> dict[str, str | None]:
        return {"state": self.state, "cause": self.cause, "reason": self.reason}


def _health(part: str, fault: Fault | None) -> Health:
    if fault is None:
        return Health(UP)
    state = READ_ONLY if fault.cause == Cause.READ_ONLY else DOWN
    return Health(state, fault.cause.value, f"{part} {fault.reason}")


async def shard_health(shard: Shard) -> Health:
    return _health(f"shard {shard.name}", await shard.probe())


async def catalog_health(catalog: Catalog) -> Health:
    return _health("the catalog database", await catalog.probe())


def redis_health(cache: PlacementCache) -> Health | None:
    """None when no Redis is configured (the in-process cache is then the design, not a fault)."""
    if not isinstance(cache, RedisCache):
        return None
    fault = cache.fault
    if fault is None:
        return Health(UP)
    return Health(
        DOWN, fault.cause.value, f"redis {fault.reason}; placements are read from the catalog"
    )
