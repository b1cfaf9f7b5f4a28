"""Async engines for shard and catalog databases, and the translation of driver failures
into domain errors, in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shards.errors import DomicileError

GUARD_MARKER = "domicile residency guard"
_WRITE = "domicile_write"


def create_engine(url: str) -> AsyncEngine:
    """An engine tuned for its backend. Parameters are never echoed in errors or logs: they
    hold raw subject ids and record contents (contract, invariant 7)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, hide_parameters=True, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=5,
        connect_args={
            "timeout": 3,
            "command_timeout": 30,
            "server_settings": {"application_name": "domicile"},
        },
    )


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
            "busy_timeout=30000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_unavailable(exc: BaseException) -> bool:
    """Whether a failure means "the database cannot be reached" (retryable), not a bug."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            return True
        return is_unavailable(exc.orig) if exc.orig is not None else False
    return isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError)) or (
        type(exc).__module__.startswith("asyncpg")
        and type(exc).__name__
        in {
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "ConnectionFailureError",
            "InterfaceError",
            "AdminShutdownError",
            "TooManyConnectionsError",
        }
    )


@asynccontextmanager
async def transaction(
    engine: AsyncEngine,
    *,
    write: bool,
    unavailable: Callable[[], DomicileError],
    guard: Callable[[], DomicileError] | None = None,
) -> AsyncIterator[AsyncConnection]:
    """A transaction on ``engine``; connection failures become ``unavailable()``."""
    try:
        conn = await engine.connect()
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable() from exc
        raise
    try:
        if write:
            await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            yield conn
    except IntegrityError as exc:
        if guard is not None and GUARD_MARKER in str(exc.orig):
            raise guard() from exc
        raise
    except DomicileError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable() from exc
        raise
    finally:
        with contextlib.suppress(Exception):  # the connection is being discarded anyway
            await conn.close()
