"""The shards of a deployment: one engine per shard, built at start-up, disposed at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domicile.shards.engines import create_engine, transaction
from domicile.shards.errors import ResidencyGuardViolation, ShardUnavailable
from domicile.shards.policy import Region, ShardSpec, Topology


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

    #: Run before the shard's first write in this process (schema check, identity, residency
    #: guard in step with the policy), and again on the next write while it fails, e.g. when
    #: the shard was down at start-up.
    prepare: Callable[[], Awaitable[None]] | None = None
    ready: bool = False
    _preparing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure_ready(self) -> None:
        if self.ready or self.prepare is None:
            return
        async with self._preparing:
            if not self.ready:
                await self.prepare()
                self.ready = True

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        await self.ensure_ready()
        async with self.write_unprepared() as conn:
            yield conn

    def write_unprepared(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine,
            write=True,
            unavailable=lambda: ShardUnavailable(self.name),
            guard=lambda: ResidencyGuardViolation(self.name),
        )

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read transaction; with ``snapshot``, all its statements read one snapshot."""
        await self.ensure_ready()
        async with self._read_unprepared(snapshot=snapshot) as conn:
            yield conn

    def _read_unprepared(
        self, *, snapshot: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine,
            write=False,
            unavailable=lambda: ShardUnavailable(self.name),
            snapshot=snapshot,
        )

    async def ping(self, within: float = 2.0) -> bool:
        """Whether the database answers (schema or not)."""
        try:
            async with asyncio.timeout(within), self._read_unprepared() as conn:
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
