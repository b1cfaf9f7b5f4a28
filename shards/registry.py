"""The shards of a deployment: one engine per shard, built at start-up, disposed at shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domicile.shards.engines import create_engine, transaction
from domicile.shards.errors import ResidencyGuardViolation, ShardUnavailable
from domicile.shards.faults import RESET_CAUSES, Cause, Fault
from domicile.shards.policy import Region, ShardSpec, Topology
from domicile.shards.schema import shard_identity


def engine_for(spec: ShardSpec, *, migrating: bool = False) -> AsyncEngine:
    """The shard's engine with its timeouts; a migration's statements bound themselves."""
    return create_engine(
        spec.url,
        connect_timeout=spec.connect_timeout,
        statement_timeout=None if migrating else spec.statement_timeout,
        tls=spec.tls,
    )


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

    #: What must hold before the shard serves (``verify``: schema and identity) and before its
    #: first write in this process (``sync``: residency guard in step with the policy). Each is
    #: retried on the next request while it fails (the shard was down at start-up, or
    #: read-only, which stops only ``sync``), and again after a fault that means the database
    #: was dropped or replaced since.
    verify: Callable[[], Awaitable[None]] | None = None
    sync: Callable[[], Awaitable[None]] | None = None
    verified: bool = False
    ready: bool = False
    _preparing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure_ready(self, *, write: bool = True) -> None:
        if self.ready or (self.verified and not write):
            return
        async with self._preparing:
            if not self.verified:
                if self.verify is not None:
                    await self.verify()
                self.verified = True
            if write and not self.ready:
                if self.sync is not None:
                    await self.sync()
                self.ready = True

    def unavailable(self, fault: Fault) -> ShardUnavailable:
        """The error for ``fault`` met on this shard (pass as ``unavailable=``)."""
        if fault.cause in RESET_CAUSES:
            self.verified = self.ready = False
        return ShardUnavailable(self.name, fault)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        await self.ensure_ready()
        async with self.write_unprepared() as conn:
            yield conn

    def write_unprepared(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine,
            write=True,
            unavailable=self.unavailable,
            guard=lambda: ResidencyGuardViolation(self.name),
        )

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read transaction; with ``snapshot``, all its statements read one snapshot."""
        await self.ensure_ready(write=False)
        async with self.read_unprepared(snapshot=snapshot) as conn:
            yield conn

    def read_unprepared(
        self, *, snapshot: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(
            self.engine, write=False, unavailable=self.unavailable, snapshot=snapshot
        )

    async def probe(self, within: float = 2.0) -> Fault | None:
        """Why the shard cannot fully serve now, or None when it can. A read-only shard
        answers ``Cause.READ_ONLY``: it serves reads, not writes."""
        try:
            async with asyncio.timeout(within):
                await self.ensure_ready(write=False)
                async with self.read_unprepared() as conn:
                    # Touches the schema, so a dropped table or database is seen here.
                    owner = await conn.scalar(select(shard_identity.c.name))
                    if owner is not None and owner != self.name:
                        raise self.unavailable(identity_mismatch(owner))
                    if await _read_only(conn):
                        return Fault(Cause.READ_ONLY)
                    if _disk_full(conn):
                        return Fault(Cause.DISK_FULL)
        except ShardUnavailable as exc:
            return exc.fault
        except TimeoutError:
            return Fault(Cause.TIMED_OUT)
        return None


def identity_mismatch(owner: str) -> Fault:
    return Fault(Cause.IDENTITY_MISMATCH, f"its database records shard {owner}")


#: A SQLite shard whose file system has less room than this cannot be trusted with a write
#: (its WAL grows by pages); PostgreSQL's own disk is seen only when a write fails.
SQLITE_MIN_FREE = 1024 * 1024


def _disk_full(conn: AsyncConnection) -> bool:
    path = conn.engine.url.database
    if conn.dialect.name != "sqlite" or not path or path == ":memory:":
        return False
    return shutil.disk_usage(Path(path).parent).free < SQLITE_MIN_FREE


async def _read_only(conn: AsyncConnection) -> bool:
    if conn.dialect.name == "postgresql":
        setting = await conn.scalar(text("SELECT current_setting('transaction_read_only')"))
        return bool(setting == "on")
    path = conn.engine.url.database
    return bool(path) and path != ":memory:" and not os.access(str(path), os.W_OK)


class ShardRegistry:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._shards = {
            name: Shard(spec, topology.regions[spec.region], engine_for(spec))
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
