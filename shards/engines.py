"""Async engines for shard and catalog databases: what differs between their dialects, and
where driver failures meet their classification (``shards.faults``)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from domicile.shards.errors import DomicileError
from domicile.shards.faults import Cause, Fault, classify
from domicile.shards.files import private_file
from domicile.shards.policy import CONNECT_TIMEOUT, STATEMENT_TIMEOUT
from domicile.shards.tls import BY_HOST, Tls, client_context

GUARD_MARKER = "domicile residency guard"
_WRITE = "domicile_write"


#: How long a request waits for a free pooled connection.
POOL_TIMEOUT = 5.0
#: How long a SQLite writer waits for the file's lock.
SQLITE_LOCK_WAIT = 30.0


def create_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    statement_timeout: float | None = STATEMENT_TIMEOUT,
    tls: Tls = BY_HOST,
) -> AsyncEngine:
    """An engine tuned for its backend. Parameters are never echoed in errors or logs: they
    hold raw subject ids and record contents (contract, invariant 7). The timeouts are
    PostgreSQL's: ``statement_timeout`` is the client's limit on one statement (None: none, for
    schema migrations, which bound themselves). A SQLite file has no server to fall silent; its
    writers wait up to ``SQLITE_LOCK_WAIT`` for the file's lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_async_engine(
            url, hide_parameters=True, connect_args={"timeout": SQLITE_LOCK_WAIT}
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {
        "timeout": connect_timeout,
        "command_timeout": statement_timeout,
        "server_settings": {"application_name": "domicile"},
        "ssl": client_context(tls, parsed.host),
    }
    engine = create_async_engine(
        url,
        hide_parameters=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=POOL_TIMEOUT,
        connect_args=connect_args,
    )
    _, options = engine.dialect.create_connect_args(parsed)
    for adapter_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        options.pop(adapter_only, None)
    statements = StatementPool(lambda: asyncpg.connect(**options, **connect_args), size=10)
    _statement_pools[engine.sync_engine] = statements
    # AsyncEngine.dispose runs this inside its greenlet, where await_ may wait on the loop.
    event.listen(engine.sync_engine, "engine_disposed", lambda _: await_(statements.close()))
    return engine


class StatementPool:
    """Raw asyncpg connections for work that is one SQL statement (a point read; a write whose
    fence, change and audit entry are one statement): no transaction block, since a single
    statement is atomic and reads one snapshot; each statement prepared once per connection and
    run through its ``PreparedStatement`` (5 us less per call than the connection's statement
    cache); and a checkout that costs a list pop. Checking out through SQLAlchemy or asyncpg's
    own pool costs more CPU than such a query's whole client side (bench/RESULTS.md).
    Connections open on first use, up to ``size``; callers beyond that wait in order.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._prepared: dict[asyncpg.Connection, dict[str, PreparedStatement]] = {}

    async def fetchrow(
        self,
        sql: str,
        *args: Any,
        unavailable: Callable[[Fault], DomicileError],
        guard: Callable[[], DomicileError] | None = None,
    ) -> asyncpg.Record | None:
        """Run one statement; failures are translated as in ``transaction``."""
        try:
            conn = self._idle.pop() if self._idle else await self._acquire()
            try:
                row = await self._run(conn, sql, args)
            except asyncpg.PostgresError as exc:
                if _ends_session(exc):
                    self._discard(conn)
                else:
                    self._release(conn)  # the statement failed; the session is as it was
                raise
            except BaseException:
                self._discard(conn)  # connection lost, timed out or cancelled mid-statement
                raise
            self._release(conn)
            return row
        except Exception as exc:
            if guard is not None and GUARD_MARKER in str(exc):
                raise guard() from exc  # the shard's residency trigger refused the row
            if (fault := classify(exc)) is not None:
                raise unavailable(fault) from exc
            raise

    async def _run(self, conn: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> Any:
        statements = self._prepared[conn]
        statement = statements.get(sql)
        if statement is None:
            statement = statements[sql] = await conn.prepare(sql)
        try:
            return await statement.fetchrow(*args)
        except (InvalidCachedStatementError, OutdatedSchemaCacheError):
            # An online migration changed a table under the statement, which refused to run
            # (so ran nothing): prepare it again, as the connection's own cache would.
            statement = statements[sql] = await conn.prepare(sql)
            return await statement.fetchrow(*args)

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._open < self._size:
                self._open += 1
                try:
                    conn = await self._connect()
                    self._prepared[conn] = {}
                    return conn
                except BaseException:
                    self._open -= 1
                    self._hand_over(None)
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                elif (handed := waiter.result()) is not None:
                    self._release(handed)  # handed over just as we were cancelled: pass it on
                else:
                    self._hand_over(None)
                raise
            if conn is not None:
                return conn
            # None: a slot was freed; loop round to open a connection in it

    def _hand_over(self, conn: asyncpg.Connection | None) -> bool:
        """Give a connection (or, with None, a free slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _release(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed():
            self._discard(conn)
        elif not self._hand_over(conn):
            self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        self._prepared.pop(conn, None)
        conn.terminate()
        self._open -= 1
        self._hand_over(None)

    async def close(self) -> None:
        """Close the idle connections (at shutdown none is busy). The pool stays usable and
        reopens connections on demand, like a disposed SQLAlchemy engine."""
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            self._prepared.pop(conn, None)
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


def _ends_session(exc: asyncpg.PostgresError) -> bool:
    """Whether the server ended the session with this error (shutdown, termination, a lost
    connection): the connection may not know it yet, and must not be used again."""
    fault = classify(exc)
    return fault is not None and fault.cause == Cause.UNREACHABLE


_statement_pools: weakref.WeakKeyDictionary[Engine, StatementPool] = weakref.WeakKeyDictionary()


def statement_pool(engine: AsyncEngine) -> StatementPool | None:
    """The engine's pool for single-statement work; None on SQLite."""
    return _statement_pools.get(engine.sync_engine)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control so writers can BEGIN IMMEDIATE (no lock upgrades,
        # hence no deadlock errors between concurrent writers).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",  # durable against process crashes, which is what WAL needs
            "foreign_keys=ON",
            "secure_delete=ON",  # erased bytes are overwritten, not left in free pages
            f"busy_timeout={int(SQLITE_LOCK_WAIT * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def insert_on_conflict(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that can say what a conflict on a key does
    (``on_conflict_do_nothing`` / ``on_conflict_do_update``), in the dialect of ``conn``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


#: Transaction-scoped advisory lock keys (PostgreSQL) of the start-up steps that write.
STARTUP_LOCK = 0x646F6D2D73746172  # "dom-star"


async def serialize_writers(conn: AsyncConnection, key: int = STARTUP_LOCK) -> None:
    """Make the caller's write transaction the only one holding ``key`` until it ends, so
    processes starting together take their start-up writes one after another. SQLite's write
    transactions (``BEGIN IMMEDIATE``) exclude each other already."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


async def scrub_freed_pages(engine: AsyncEngine) -> None:
    """After personal data is deleted: on SQLite, secure_delete zeroed the freed pages, and a
    TRUNCATE checkpoint also empties the WAL, which still holds earlier copies of those pages.
    PostgreSQL's freed space is its VACUUM's business."""
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@asynccontextmanager
async def transaction(
    engine: AsyncEngine,
    *,
    write: bool,
    unavailable: Callable[[Fault], DomicileError],
    guard: Callable[[], DomicileError] | None = None,
    snapshot: bool = False,
) -> AsyncIterator[AsyncConnection]:
    """A transaction on ``engine``; failures that are the database's state (``faults``) become
    ``unavailable(fault)``. With ``snapshot``, every statement in it reads the same snapshot."""
    try:
        conn = await engine.connect()
    except Exception as exc:
        if (fault := classify(exc)) is not None:
            raise unavailable(fault) from exc
        raise
    try:
        if write:
            await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            if snapshot and engine.dialect.name == "postgresql":
                # READ COMMITTED takes a snapshot per statement; a SQLite transaction reads one.
                await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            yield conn
    except IntegrityError as exc:
        if guard is not None and GUARD_MARKER in str(exc.orig):
            raise guard() from exc
        raise
    except DomicileError:
        raise
    except Exception as exc:
        if (fault := classify(exc)) is not None:
            raise unavailable(fault) from exc
        raise
    finally:
        with contextlib.suppress(Exception):  # the connection is being discarded anyway
            await conn.close()
