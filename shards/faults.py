"""Why a database cannot serve: driver and OS errors (asyncpg, SQLite, Redis, sockets, DNS,
timeouts) sorted into the few causes an operator can act on, in this one place.

Everything that talks to a shard or the catalog turns a failure into a ``Fault`` here and raises
the domain's error for it (``ShardUnavailable`` or ``CatalogUnavailable``); HTTP, the CLI and
background work only ever see those. A fault's detail is written by us, never copied from the
server's message: those can quote statement parameters, which hold personal data.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import ssl
from dataclasses import dataclass
from enum import StrEnum

from redis import exceptions as redis_errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout


class Cause(StrEnum):
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timeout"
    AUTH_FAILED = "auth_failed"
    DATABASE_MISSING = "database_missing"
    SCHEMA_MISSING = "schema_missing"
    IDENTITY_MISMATCH = "identity_mismatch"
    READ_ONLY = "read_only"
    DAMAGED = "damaged"
    DISK_FULL = "disk_full"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TLS = "tls"


#: What each cause means for the operator, completing "<database> ...".
_REASONS: dict[Cause, str] = {
    Cause.UNREACHABLE: "cannot be reached",
    Cause.TIMED_OUT: "did not answer in time",
    Cause.AUTH_FAILED: "refused the credentials; check the role and password in its url",
    Cause.DATABASE_MISSING: "names a database that does not exist; create it, then run "
    "`domicile shards upgrade`",
    Cause.SCHEMA_MISSING: "has no schema yet; run `domicile shards upgrade`",
    Cause.IDENTITY_MISMATCH: "holds another shard's data",
    Cause.READ_ONLY: "is read-only (a standby?); reads are served, writes wait for a primary",
    Cause.DAMAGED: "is damaged; restore it from a backup",
    Cause.DISK_FULL: "has no disk space left",
    Cause.TOO_MANY_CONNECTIONS: "refuses new connections (too many connections)",
    Cause.TLS: "failed the TLS check; check its [tls] section",
}

#: Causes that mean the database is not the one prepared earlier (dropped, recreated, swapped):
#: a shard that meets one is checked again before it serves.
RESET_CAUSES = frozenset({Cause.DATABASE_MISSING, Cause.SCHEMA_MISSING, Cause.IDENTITY_MISMATCH})


@dataclass(frozen=True)
class Fault:
    cause: Cause
    detail: str = ""

    @property
    def reason(self) -> str:
        text = _REASONS[self.cause]
        return f"{text} ({self.detail})" if self.detail else text


#: The fault of a database that did not answer, when nothing more precise is known.
UNREACHABLE = Fault(Cause.UNREACHABLE)

# PostgreSQL SQLSTATEs by cause; a class (two characters) covers all its codes.
_SQLSTATES: dict[str, Cause] = {
    "08": Cause.UNREACHABLE,  # connection exception
    "57P01": Cause.UNREACHABLE,  # admin shutdown
    "57P02": Cause.UNREACHABLE,  # crash shutdown
    "57P03": Cause.UNREACHABLE,  # cannot connect now (starting up, in recovery)
    "57014": Cause.TIMED_OUT,  # statement_timeout or lock_timeout cancelled the statement
    "55P03": Cause.TIMED_OUT,  # lock not available (lock_timeout)
    "28": Cause.AUTH_FAILED,  # invalid authorization specification, invalid password
    "42501": Cause.AUTH_FAILED,  # insufficient privilege
    "3D000": Cause.DATABASE_MISSING,
    "42P01": Cause.SCHEMA_MISSING,  # undefined table
    "3F000": Cause.SCHEMA_MISSING,  # invalid schema name
    "25006": Cause.READ_ONLY,  # read-only SQL transaction (hot standby, or made read-only)
    "53100": Cause.DISK_FULL,
    "53300": Cause.TOO_MANY_CONNECTIONS,
    "XX001": Cause.DAMAGED,  # data corrupted
    "XX002": Cause.DAMAGED,  # index corrupted
}

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_CODES: dict[int, Fault] = {
    3: Fault(Cause.AUTH_FAILED, "permission denied"),  # SQLITE_PERM
    5: Fault(Cause.TIMED_OUT, "database is locked"),  # SQLITE_BUSY
    6: Fault(Cause.TIMED_OUT, "table is locked"),  # SQLITE_LOCKED
    8: Fault(Cause.READ_ONLY),  # SQLITE_READONLY
    10: Fault(Cause.DAMAGED, "disk I/O error"),  # SQLITE_IOERR
    11: Fault(Cause.DAMAGED, "malformed database file"),  # SQLITE_CORRUPT
    13: Fault(Cause.DISK_FULL),  # SQLITE_FULL
    14: Fault(Cause.UNREACHABLE, "cannot open the database file"),  # SQLITE_CANTOPEN
    26: Fault(Cause.DAMAGED, "the file is not a database"),  # SQLITE_NOTADB
}

# asyncpg's own errors for a connection that cannot be used: closed under it, or (internal
# client error) left mid-operation when the server ended the session during a statement.
_ASYNCPG_CONNECTION_ERRORS = frozenset(
    {"InterfaceError", "ConnectionDoesNotExistError", "InternalClientError"}
)


def classify(exc: BaseException) -> Fault | None:
    """The fault behind ``exc``, or None when it is not the database's state (a bug, a
    constraint, a conflict), following SQLAlchemy's wrapping and the exceptions' causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        fault = _classify_one(current)
        if fault is not None:
            return fault
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault(Cause.UNREACHABLE, "connection lost")
    return None


def _classify_one(exc: BaseException) -> Fault | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        cause = _SQLSTATES.get(sqlstate) or _SQLSTATES.get(sqlstate[:2])
        return None if cause is None else Fault(cause)
    if isinstance(exc, sqlite3.Error):
        return _sqlite_fault(exc)
    if isinstance(exc, redis_errors.RedisError):
        return _redis_fault(exc)
    if isinstance(exc, PoolTimeout):
        return Fault(Cause.TIMED_OUT, "no free connection in the pool")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Fault(Cause.TIMED_OUT)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Fault(Cause.TLS, _certificate_problem(exc))
    if isinstance(exc, ssl.SSLError):
        return Fault(Cause.TLS, exc.reason or "TLS handshake failed")
    if isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc):
        return Fault(Cause.TLS, "the server does not offer TLS")  # asyncpg's words for it
    if isinstance(exc, socket.gaierror):
        return Fault(Cause.UNREACHABLE, "host name does not resolve")
    if isinstance(exc, ConnectionRefusedError):
        return Fault(Cause.UNREACHABLE, "connection refused")
    if isinstance(exc, OSError):
        return Fault(Cause.UNREACHABLE, exc.strerror or type(exc).__name__)
    if type(exc).__module__.startswith("asyncpg") and (
        type(exc).__name__ in _ASYNCPG_CONNECTION_ERRORS
    ):
        return Fault(Cause.UNREACHABLE, "connection lost")
    return None


def _certificate_problem(exc: ssl.SSLCertVerificationError) -> str:
    message = exc.verify_message or ""
    if "hostname mismatch" in message.lower() or "ip address mismatch" in message.lower():
        return "its certificate is for another host name"
    if exc.verify_code in (18, 19, 20, 21):  # self-signed, or an issuer not trusted
        return "untrusted certificate: its CA is not in the [tls] ca file"
    return message or "certificate not accepted"


def _sqlite_fault(exc: sqlite3.Error) -> Fault | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (fault := _SQLITE_CODES.get(code & 0xFF)) is not None:
        return fault
    # SQLITE_ERROR covers many things; a missing table is the one that is the database's state.
    if str(exc).startswith("no such table"):
        return Fault(Cause.SCHEMA_MISSING)
    return None


def _redis_fault(exc: redis_errors.RedisError) -> Fault | None:
    if isinstance(exc, redis_errors.AuthenticationError) or str(exc).startswith(
        ("NOAUTH", "WRONGPASS", "invalid username-password")
    ):
        return Fault(Cause.AUTH_FAILED)
    if isinstance(exc, redis_errors.TimeoutError):
        return Fault(Cause.TIMED_OUT)
    if isinstance(exc, redis_errors.ConnectionError):
        # redis-py raises it while handling the socket's or TLS's own error: that says more.
        inner = exc.__cause__ or exc.__context__
        return (classify(inner) if inner is not None else None) or UNREACHABLE
    if isinstance(exc, redis_errors.ReadOnlyError):
        return Fault(Cause.READ_ONLY)
    return None
