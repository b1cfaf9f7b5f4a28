"""Schema of shards and catalog: alembic histories applied programmatically, one database at a
time, plus the residency guard's jurisdiction list kept in step with the policy.

Shards are migrated in waves of ``parallel`` shards, one revision per transaction, each revision
journaled in the catalog and logged (``schema.migrated``) on the shard's own audit log in the
revision's transaction. A shard that fails stops the run before the next wave: every shard is
left at a revision boundary, and running again resumes from there. On PostgreSQL a migration
holds an advisory lock (one migrator per shard) and runs under ``lock_timeout`` (so DDL waiting
for a lock fails fast instead of queueing every write behind it) and ``statement_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import secrets
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domicile import migrations
from domicile.audit import events
from domicile.audit.events import SYSTEM
from domicile.shards.auditlog import shard_leaf
from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import metadata as catalog_metadata
from domicile.shards.engines import _WRITE, serialize_writers
from domicile.shards.errors import (
    DomicileError,
    InvalidInput,
    MigrationFailed,
    ShardUnavailable,
)
from domicile.shards.faults import Fault, classify
from domicile.shards.guard import sync_guard
from domicile.shards.migration_journal import MigrationJournal
from domicile.shards.policy import Region, ShardSpec, Topology
from domicile.shards.policy_log import log_policy
from domicile.shards.registry import Shard, engine_for, identity_mismatch
from domicile.shards.schema import metadata as shard_metadata
from domicile.shards.schema import shard_identity
from domicile.shards.states import MigrationStatus
from domicile.shards.tls import Tls

SHARD_HISTORY = "shard"
CATALOG_HISTORY = "catalog"
#: The schema each history builds, handed to its alembic environment (online and ``--sql``).
_METADATA = {SHARD_HISTORY: shard_metadata, CATALOG_HISTORY: catalog_metadata}
UPGRADE, DOWNGRADE = "upgrade", "downgrade"

_APPEND = text("INSERT INTO audit_pending (leaf) VALUES (:leaf)")
_APPEND_BEFORE_0002 = text("INSERT INTO audit_entries (leaf) VALUES (:leaf)")

#: ``pg_try_advisory_lock`` key held while a shard is being migrated ("domicile" in ASCII).
_LOCK_KEY = 0x646F6D6963696C65


@dataclass(frozen=True)
class Timeouts:
    """PostgreSQL guards for each revision's transaction, in seconds."""

    lock: float = 5.0
    statement: float = 600.0

    def sql(self, scope: str = "LOCAL") -> list[str]:
        return [
            f"SET {scope} lock_timeout = '{int(self.lock * 1000)}ms'",
            f"SET {scope} statement_timeout = '{int(self.statement * 1000)}ms'",
        ]


@dataclass
class ShardResult:
    shard: str
    status: str  # migrated | current | failed | not started
    before: str | None = None
    after: str | None = None
    applied: list[str] = field(default_factory=list)
    error: str | None = None
    #: The database's state that stopped it, when that is what did (not a failed revision).
    fault: Fault | None = None


def alembic_config(history: str, url: str | None = None, scripts: Path | None = None) -> Config:
    cfg = Config()
    location = scripts or Path(migrations.__file__).parent / history
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["target_metadata"] = _METADATA[history]
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision(history: str, scripts: Path | None = None) -> str:
    head = ScriptDirectory.from_config(alembic_config(history, scripts=scripts)).get_current_head()
    assert head is not None
    return head


def resolve_revision(target: str, scripts: Path | None = None) -> str | None:
    """``head``, ``base`` or a (possibly abbreviated) revision id -> a full id, None for base."""
    script = ScriptDirectory.from_config(alembic_config(SHARD_HISTORY, scripts=scripts))
    if target == "base":
        return None
    try:
        found = script.get_revision("head" if target == "head" else target)
    except CommandError as exc:
        raise InvalidInput("unknown_revision", f"revision {target!r}: {exc}") from None
    if found is None:
        raise InvalidInput("unknown_revision", f"there is no revision {target!r}")
    return found.revision


def plan_steps(
    current: str | None, target: str | None, action: str, scripts: Path | None = None
) -> list[tuple[str | None, str | None]]:
    """The revision steps (from, to) that take a shard from ``current`` to ``target``."""
    if current == target:
        return []
    script = ScriptDirectory.from_config(alembic_config(SHARD_HISTORY, scripts=scripts))
    upper, lower = (target, current) if action == UPGRADE else (current, target)
    if upper is None:
        raise MigrationFailed(f"cannot {action} from {current or 'base'} to {target or 'base'}")
    try:
        revisions = list(script.iterate_revisions(upper, lower or "base"))
    except CommandError:
        raise MigrationFailed(
            f"cannot {action} from {current or 'base'} to {target or 'base'}: "
            f"use {DOWNGRADE if action == UPGRADE else UPGRADE}"
        ) from None
    if action == UPGRADE:
        return [(_down(r.down_revision), r.revision) for r in reversed(revisions)]
    return [(r.revision, _down(r.down_revision)) for r in revisions]


def _down(revision: str | Sequence[str] | None) -> str | None:
    if revision is None or isinstance(revision, str):
        return revision
    raise MigrationFailed("the shard history must be linear (a revision has several parents)")


def _run(connection: Connection, cfg: Config, action: str, revision: str) -> None:
    cfg.attributes["connection"] = connection
    if action == UPGRADE:
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


async def migrate(engine: AsyncEngine, history: str, action: str, revision: str) -> None:
    """Apply a history to one database in alembic's own transactions (the catalog, tests)."""
    cfg = alembic_config(history)
    async with engine.connect() as conn:
        # One transaction for the whole history, as the only writer: processes starting
        # together find the database migrated by the first rather than racing its DDL.
        await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            await serialize_writers(conn)
            await conn.run_sync(_run, cfg, action, revision)


def _has_queue(connection: Connection) -> bool:
    return inspect(connection).has_table("audit_pending")


def _read_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_read_revision)


async def shard_revision(shard: Shard) -> str | None:
    """The shard's schema revision (None: no schema yet), its faults as the shard's errors."""
    try:
        return await current_revision(shard.engine)
    except Exception as exc:
        if (fault := classify(exc)) is not None:
            raise shard.unavailable(fault) from exc
        raise


async def check_identity(shard: Shard) -> None:
    """Refuse a database that records another shard's identity (a wrong url, a restored
    backup of another shard)."""
    async with shard.read_unprepared() as conn:
        owner = await conn.scalar(select(shard_identity.c.name))
    if owner is not None and owner != shard.name:
        raise shard.unavailable(identity_mismatch(owner))


def _describe(exc: BaseException) -> str:
    """One line for the journal (kept in the catalog, so no statement or parameters)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0][:300]}"
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


async def migrate_shard(
    shard: Shard,
    journal: MigrationJournal,
    action: str,
    target: str | None,
    *,
    wave: str,
    scripts: Path | None = None,
    timeouts: Timeouts = Timeouts(),
) -> ShardResult:
    """Take one shard to ``target`` one journaled, audited revision at a time."""
    result = ShardResult(shard.name, "failed")
    try:
        async with _migration_connection(shard) as conn:
            result.before = result.after = await conn.run_sync(_read_revision)
            await conn.commit()
            await journal.interrupt(shard.name)
            for before, after in plan_steps(result.before, target, action, scripts):
                entry = await journal.start(
                    wave=wave,
                    shard=shard.name,
                    action=action,
                    from_revision=before,
                    to_revision=after,
                )
                try:
                    await _apply_step(conn, shard, action, before, after, scripts, timeouts)
                except Exception as exc:
                    await journal.finish(entry, MigrationStatus.FAILED, _describe(exc))
                    raise
                await journal.finish(entry, MigrationStatus.DONE)
                result.after = after
                result.applied.append(after or "base")
    except Exception as exc:  # reported per shard; the wave decides whether to go on
        result.fault = exc.fault if isinstance(exc, ShardUnavailable) else classify(exc)
        result.error = (
            _describe(exc)
            if result.fault is None
            else ShardUnavailable(shard.name, result.fault).message
        )
        return result
    result.status = "migrated" if result.applied else "current"
    return result


@asynccontextmanager
async def _migration_connection(shard: Shard) -> AsyncIterator[AsyncConnection]:
    """A dedicated connection for one shard's migration: the advisory lock on PostgreSQL;
    foreign keys off on SQLite, where a batch table rebuild would otherwise cascade-delete the
    rows that reference the rebuilt table (``foreign_key_check`` runs before each commit)."""
    conn = await shard.engine.connect()
    try:
        if shard.dialect == "postgresql":
            lock = text("SELECT pg_try_advisory_lock(:k)")
            got = (await conn.execute(lock, {"k": _LOCK_KEY})).scalar_one()
            await conn.commit()
            if not got:
                raise MigrationFailed(f"another migration is running on shard {shard.name}")
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                await conn.commit()
        else:
            await conn.execution_options(**{_WRITE: True})  # BEGIN IMMEDIATE: a writer
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.execute("PRAGMA foreign_keys=OFF")
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()
                await raw.execute("PRAGMA foreign_keys=ON")
    finally:
        await conn.close()


async def _apply_step(
    conn: AsyncConnection,
    shard: Shard,
    action: str,
    before: str | None,
    after: str | None,
    scripts: Path | None,
    timeouts: Timeouts,
) -> None:
    """One revision in one transaction, with its ``schema.migrated`` entry."""
    cfg = alembic_config(SHARD_HISTORY, scripts=scripts)
    async with conn.begin():
        if shard.dialect == "postgresql":
            for statement in timeouts.sql():
                await conn.execute(text(statement))
        await conn.run_sync(_run, cfg, action, after or "base")
        if shard.dialect == "sqlite":
            broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
            if broken:
                raise MigrationFailed(f"revision left {len(broken)} rows with dangling keys")
        if after is not None:  # downgrading to base drops the log itself
            leaf = shard_leaf(
                shard,
                events.SCHEMA_MIGRATED,
                SYSTEM,
                subject=None,
                jurisdiction=None,
                action=action,
                from_revision=before,
                revision=after,
            )
            # The step may leave the shard at a revision older than this code's: before 0002
            # the log had no queue, and entries waited in audit_entries without an index.
            queued = await conn.run_sync(_has_queue)
            await conn.execute(_APPEND if queued else _APPEND_BEFORE_0002, {"leaf": leaf})


async def run_wave(
    shards: Sequence[Shard],
    journal: MigrationJournal,
    action: str,
    target: str | None,
    *,
    parallel: int = 1,
    scripts: Path | None = None,
    timeouts: Timeouts = Timeouts(),
    topology: Topology | None = None,
) -> list[ShardResult]:
    """Migrate ``shards`` ``parallel`` at a time; the first wave in which a revision failed is
    the last (a shard that cannot be reached is skipped).
    With ``topology``, each migrated shard's identity and residency guard are synced too.

    alembic's ``op`` and ``context`` are process-wide, so two migrations may never share a
    process: in waves of several shards, each shard is migrated by a worker process.
    """
    wave = secrets.token_hex(8)
    parallel = max(1, parallel)
    results: list[ShardResult] = []
    with contextlib.ExitStack() as stack:
        pool = None
        if parallel > 1 and len(shards) > 1:
            spawn = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(parallel, mp_context=spawn))
        for start in range(0, len(shards), parallel):
            group = shards[start : start + parallel]
            if pool is None:
                outcomes = [
                    await migrate_shard(
                        s, journal, action, target, wave=wave, scripts=scripts, timeouts=timeouts
                    )
                    for s in group
                ]
            else:
                loop = asyncio.get_running_loop()
                catalog_url = _url_of(journal.catalog)
                jobs = [
                    _Job(
                        s.spec,
                        s.region,
                        catalog_url,
                        journal.catalog.tls,
                        action,
                        target,
                        wave,
                        scripts,
                        timeouts,
                    )
                    for s in group
                ]
                outcomes = list(
                    await asyncio.gather(
                        *(loop.run_in_executor(pool, _migrate_in_worker, job) for job in jobs)
                    )
                )
            if topology is not None:
                for shard, result in zip(group, outcomes, strict=True):
                    await _sync_after(shard, result, topology)
            results += outcomes
            # A revision that failed stops the rollout; a shard that could not be reached
            # (its database's state, no revision ran) costs only itself.
            if any(r.status == "failed" and r.fault is None for r in outcomes):
                results += [
                    ShardResult(s.name, "not started") for s in shards[start + len(group) :]
                ]
                break
    return results


async def _sync_after(shard: Shard, result: ShardResult, topology: Topology) -> None:
    if result.status == "failed" or result.after is None:
        return
    try:
        await sync_shard(shard, topology.jurisdictions_for_shard(shard.name), topology)
    except DomicileError as exc:
        result.status, result.error = "failed", str(exc)
        if isinstance(exc, ShardUnavailable):
            result.fault = exc.fault


def _url_of(catalog: Catalog) -> str:
    return catalog.engine.url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class _Job:
    spec: ShardSpec
    region: Region
    catalog_url: str
    catalog_tls: Tls
    action: str
    target: str | None
    wave: str
    scripts: Path | None
    timeouts: Timeouts


def _migrate_in_worker(job: _Job) -> ShardResult:
    async def work() -> ShardResult:
        shard = Shard(job.spec, job.region, engine_for(job.spec, migrating=True))
        catalog = Catalog(job.catalog_url, tls=job.catalog_tls)
        try:
            return await migrate_shard(
                shard,
                MigrationJournal(catalog),
                job.action,
                job.target,
                wave=job.wave,
                scripts=job.scripts,
                timeouts=job.timeouts,
            )
        finally:
            await shard.engine.dispose()
            await catalog.dispose()

    return asyncio.run(work())


async def render_sql(
    shard: Shard,
    action: str,
    target: str | None,
    *,
    current: str | None = None,
    known: bool = False,
    scripts: Path | None = None,
    timeouts: Timeouts = Timeouts(),
) -> str:
    """The SQL that ``action`` would run on ``shard`` (alembic offline mode), from its current
    revision (read from the shard unless ``known``) to ``target``. Applying it by hand skips the
    journal and the ``schema.migrated`` entries."""
    if not known:
        current = await shard_revision(shard)
    header = f"-- shard {shard.name} ({shard.dialect}): {current or 'base'} -> {target or 'base'}"
    plan_steps(current, target, action, scripts)  # refuses an impossible direction
    if current == target:
        return f"{header}\n-- nothing to do\n"
    cfg = alembic_config(SHARD_HISTORY, url=shard.spec.url, scripts=scripts)
    buffer = io.StringIO()
    cfg.output_buffer = buffer
    span = f"{current or 'base'}:{target or 'base'}"
    if action == UPGRADE:
        command.upgrade(cfg, span, sql=True)
    else:
        command.downgrade(cfg, span, sql=True)
    preamble = [f"{s};" for s in timeouts.sql("SESSION")] if shard.dialect == "postgresql" else []
    return "\n".join([header, *preamble, buffer.getvalue()])


async def sync_shard(
    shard: Shard, jurisdictions: frozenset[str], topology: Topology | None = None
) -> None:
    """Record the shard's identity (first start) or check it, and make its residency guard
    admit exactly ``jurisdictions``; with ``topology``, log its policy and region facts where
    the log's latest ``policy.changed`` entry declares otherwise, before any entry this process
    writes. (This is the shard's preparation, hence unprepared.)"""
    async with shard.write_unprepared() as conn:
        await serialize_writers(conn)  # processes starting together converge, one at a time
        row = (await conn.execute(select(shard_identity))).first()
        if row is None:
            await conn.execute(
                insert(shard_identity).values(
                    name=shard.name,
                    region=shard.region.name,
                    country=shard.region.country,
                    created_at=datetime.now(UTC),
                )
            )
        elif row.name != shard.name:
            raise shard.unavailable(identity_mismatch(row.name))
        await sync_guard(conn, jurisdictions)
        if topology is not None and await conn.run_sync(_has_queue):  # no log before 0002
            await log_policy(conn, shard, topology)
