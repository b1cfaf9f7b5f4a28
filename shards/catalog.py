"""The catalog: the control database, and the one way into it (engine, transactions, the
statement pool for single-statement work).

It holds pseudonyms, jurisdictions and shard names only: never a raw subject id, record key or
content (contract, invariant 4). Each of its concepts is a module of its own, over a ``Catalog``:

- ``shards.placements``: the directory of placements, changed only through
  ``shards.directory.Directory``, which keeps the caches in step with every change;
- ``shards.api_keys``: API keys;
- ``shards.move_journal``: the move journal;
- ``shards.migration_journal``: the schema migration journal.

A process opens one ``Catalog`` and builds each of those over it once (``router.runtime``
holds them side by side); callers reach the concept they need, never the catalog's tables.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.shards.engines import StatementPool, create_engine, statement_pool, transaction
from domicile.shards.errors import CatalogUnavailable
from domicile.shards.faults import Cause, Fault
from domicile.shards.policy import CONNECT_TIMEOUT, STATEMENT_TIMEOUT
from domicile.shards.tls import BY_HOST, Tls


class Catalog:
    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT,
        tls: Tls = BY_HOST,
    ) -> None:
        self.engine = create_engine(
            url, connect_timeout=connect_timeout, statement_timeout=statement_timeout, tls=tls
        )
        self.tls = tls
        #: One prepared statement per call, outside any transaction block (PostgreSQL); None
        #: on SQLite. Pass ``unavailable=CatalogUnavailable``, as ``transaction`` does.
        self.statements: StatementPool | None = statement_pool(self.engine)

    def transaction(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction; the database's faults become ``CatalogUnavailable``."""
        return transaction(self.engine, write=write, unavailable=CatalogUnavailable)

    async def probe(self, within: float = 2.0) -> Fault | None:
        """Why the catalog cannot serve now, or None when it can (its schema included)."""
        try:
            async with asyncio.timeout(within), self.transaction(write=False) as conn:
                await conn.execute(text("SELECT version_num FROM alembic_version"))
        except CatalogUnavailable as exc:
            return exc.fault
        except TimeoutError:
            return Fault(Cause.TIMED_OUT)
        return None

    async def dispose(self) -> None:
        await self.engine.dispose()
