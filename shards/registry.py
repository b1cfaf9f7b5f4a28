"""The shards of a deployment: one engine per shard, built at start-up, disposed at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shards.engines import create_engine, transaction
from shards.errors import ResidencyGuardViolation, ShardUnavailable
from shards.policy import Region, ShardSpec, Topology


@dataclass
class Shard:
    spec: ShardSpec
    region: Region
    engine: AsyncEngine

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine,
            write=True,
            unavailable=lambda: ShardUnavailable(self.name),
            guard=lambda: ResidencyGuardViolation(self.name),
        )

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine, write=False, unavailable=lambda: ShardUnavailable(self.name)
        )

    async def ping(self, within: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(within), self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except (ShardUnavailable, TimeoutError):
            return False
        return True


class ShardRegistry:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._shards = {
            name: Shard(spec, topology.regions[spec.region], create_engine(spec.url))
            for name, spec in topology.shards.items()
        }

    def __getitem__(self, name: str) -> Shard:
        return self._shards[name]

    def all(self) -> list[Shard]:
        return list(self._shards.values())

    async def dispose(self) -> None:
        await asyncio.gather(*(shard.engine.dispose() for shard in self._shards.values()))


@asynccontextmanager
async def open_registry(topology: Topology) -> AsyncIterator[ShardRegistry]:
    registry = ShardRegistry(topology)
    try:
        yield registry
    finally:
        await registry.dispose()
