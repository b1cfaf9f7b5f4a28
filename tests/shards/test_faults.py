"""The classification of driver and OS errors: every error class the code can meet, as the
driver raises it (SQLite's are made for real; asyncpg's carry their SQLSTATE on the class), bare
and wrapped by SQLAlchemy as the engines see them."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import asyncpg.exceptions as pg
import pytest
from redis import exceptions as redis_errors
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domicile.shards.errors import CatalogUnavailable, ShardUnavailable
from domicile.shards.faults import Cause, Fault, classify

POSTGRES: list[tuple[type[Exception], Cause]] = [
    (pg.InvalidPasswordError, Cause.AUTH_FAILED),
    (pg.InvalidAuthorizationSpecificationError, Cause.AUTH_FAILED),  # role does not exist
    (pg.InsufficientPrivilegeError, Cause.AUTH_FAILED),
    (pg.InvalidCatalogNameError, Cause.DATABASE_MISSING),
    (pg.UndefinedTableError, Cause.SCHEMA_MISSING),
    (pg.InvalidSchemaNameError, Cause.SCHEMA_MISSING),
    (pg.ReadOnlySQLTransactionError, Cause.READ_ONLY),
    (pg.TooManyConnectionsError, Cause.TOO_MANY_CONNECTIONS),
    (pg.DiskFullError, Cause.DISK_FULL),
    (pg.DataCorruptedError, Cause.DAMAGED),
    (pg.IndexCorruptedError, Cause.DAMAGED),
    (pg.AdminShutdownError, Cause.UNREACHABLE),
    (pg.CrashShutdownError, Cause.UNREACHABLE),
    (pg.CannotConnectNowError, Cause.UNREACHABLE),
    (pg.ConnectionDoesNotExistError, Cause.UNREACHABLE),
    (pg.ConnectionFailureError, Cause.UNREACHABLE),
    (pg.QueryCanceledError, Cause.TIMED_OUT),  # statement_timeout
    (pg.LockNotAvailableError, Cause.TIMED_OUT),
    (pg.InterfaceError, Cause.UNREACHABLE),  # "connection is closed"
    (pg.InternalClientError, Cause.UNREACHABLE),
]

NOT_FAULTS: list[Exception] = [
    pg.UniqueViolationError("duplicate key"),
    pg.SerializationError("could not serialize"),
    pg.SyntaxOrAccessError("a bug of ours"),
    ValueError("a bug of ours"),
    KeyError("x"),
    redis_errors.ResponseError("WRONGTYPE Operation against a key"),
]


def _cause(exc: BaseException) -> Cause | None:
    fault = classify(exc)
    return None if fault is None else fault.cause


def _wrapped(exc: Exception) -> DBAPIError:
    """As SQLAlchemy raises a driver error: the adapter's error, caused by the driver's."""
    adapted = Exception(str(exc))
    adapted.__cause__ = exc
    return DBAPIError("SELECT 1", None, adapted)


@pytest.mark.parametrize(("kind", "cause"), POSTGRES, ids=[k.__name__ for k, _ in POSTGRES])
def test_each_postgres_error_has_its_cause(kind: type[Exception], cause: Cause) -> None:
    exc = kind("a message from the server")
    for seen in (exc, _wrapped(exc)):
        assert _cause(seen) == cause


@pytest.mark.parametrize("exc", NOT_FAULTS, ids=lambda e: type(e).__name__)
def test_what_is_not_the_databases_state_is_not_a_fault(exc: Exception) -> None:
    assert classify(exc) is None
    assert classify(_wrapped(exc)) is None


def _sqlite_error(tmp_path: Path, how: str) -> sqlite3.Error:
    path = tmp_path / f"{how}.sqlite"
    try:
        if how == "not a database":
            path.write_bytes(b"garbage" * 1000)
            sqlite3.connect(path).execute("SELECT * FROM sqlite_master")
        elif how == "read-only":
            sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")
        elif how == "full":
            db = sqlite3.connect(path)
            db.execute("PRAGMA max_page_count = 2")
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (randomblob(100000))")
        elif how == "locked":
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            sqlite3.connect(path, timeout=0).execute("BEGIN IMMEDIATE")
        elif how == "cannot open":
            sqlite3.connect(tmp_path / "no-such-dir" / "x.sqlite")
        else:  # no table
            sqlite3.connect(path).execute("SELECT * FROM subjects")
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{how}: no error")


SQLITE = [
    ("not a database", Cause.DAMAGED),
    ("read-only", Cause.READ_ONLY),
    ("full", Cause.DISK_FULL),
    ("locked", Cause.TIMED_OUT),
    ("cannot open", Cause.UNREACHABLE),
    ("no table", Cause.SCHEMA_MISSING),
]


@pytest.mark.parametrize(("how", "cause"), SQLITE, ids=[h for h, _ in SQLITE])
def test_each_sqlite_error_has_its_cause(tmp_path: Path, how: str, cause: Cause) -> None:
    exc = _sqlite_error(tmp_path, how)
    assert _cause(exc) == cause, exc
    assert _cause(DBAPIError("SELECT 1", None, exc)) == cause


def test_sqlite_errors_that_are_ours_are_not_faults(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite")
    db.execute("CREATE TABLE t (x PRIMARY KEY)")
    db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as raised:
        db.execute("INSERT INTO t VALUES (1)")
    assert classify(raised.value) is None
    assert classify(IntegrityError("INSERT", None, raised.value)) is None
    with pytest.raises(sqlite3.OperationalError) as syntax:
        db.execute("SELEC 1")
    assert classify(syntax.value) is None


@pytest.mark.anyio
async def test_network_errors_have_their_causes() -> None:
    with pytest.raises(socket.gaierror) as unresolved:
        await asyncio.get_running_loop().getaddrinfo("no-such-host.invalid", 5432)
    assert classify(unresolved.value) == Fault(Cause.UNREACHABLE, "host name does not resolve")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectionRefusedError) as refused:
            await asyncio.open_connection("127.0.0.1", port)
    assert classify(refused.value) == Fault(Cause.UNREACHABLE, "connection refused")
    with pytest.raises(TimeoutError) as timed_out:
        async with asyncio.timeout(0):
            await asyncio.sleep(1)
    assert classify(timed_out.value) == Fault(Cause.TIMED_OUT)
    assert classify(PoolTimeout("QueuePool limit reached")) == Fault(
        Cause.TIMED_OUT, "no free connection in the pool"
    )
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert classify(reset) == Fault(Cause.UNREACHABLE, "Connection reset by peer")


def test_redis_errors_have_their_causes() -> None:
    assert classify(redis_errors.AuthenticationError("invalid password")) == Fault(
        Cause.AUTH_FAILED
    )
    assert classify(redis_errors.ResponseError("NOAUTH Authentication required.")) == Fault(
        Cause.AUTH_FAILED
    )
    assert classify(redis_errors.ResponseError("WRONGPASS invalid username-password")) == Fault(
        Cause.AUTH_FAILED
    )
    assert classify(redis_errors.TimeoutError("Timeout reading")) == Fault(Cause.TIMED_OUT)
    assert classify(redis_errors.ConnectionError("Connection refused")) == Fault(Cause.UNREACHABLE)


def test_errors_name_the_part_and_the_cause() -> None:
    error = ShardUnavailable("ru-msk-1", Fault(Cause.AUTH_FAILED))
    assert error.code == "shard_auth_failed"
    assert str(error) == (
        "shard ru-msk-1 refused the credentials; check the role and password in its url"
    )
    assert ShardUnavailable("ru-msk-1").code == "shard_unreachable"
    catalog = CatalogUnavailable(Fault(Cause.DATABASE_MISSING))
    assert catalog.code == "catalog_unavailable"
    assert "the catalog database names a database that does not exist" in str(catalog)
