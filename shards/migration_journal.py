"""The schema migration journal, kept in the catalog: one entry per revision step applied (or
attempted) on a shard, written by ``shards.schema_runner``.

Reached through a ``MigrationJournal`` over the process's ``Catalog``
(``Runtime.migration_journal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import shard_migrations
from domicile.shards.states import MigrationStatus


@dataclass(frozen=True)
class MigrationEntry:
    id: int
    wave: str
    shard: str
    action: str
    from_revision: str | None
    to_revision: str | None
    status: MigrationStatus
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


class MigrationJournal:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def start(
        self,
        *,
        wave: str,
        shard: str,
        action: str,
        from_revision: str | None,
        to_revision: str | None,
    ) -> int:
        """Journal a step as running; returns its entry."""
        async with self.catalog.transaction(write=True) as conn:
            return int(
                (
                    await conn.execute(
                        insert(shard_migrations)
                        .values(
                            wave=wave,
                            shard=shard,
                            action=action,
                            from_revision=from_revision,
                            to_revision=to_revision,
                            status=MigrationStatus.RUNNING,
                            started_at=_now(),
                        )
                        .returning(shard_migrations.c.id)
                    )
                ).scalar_one()
            )

    async def finish(self, entry: int, status: MigrationStatus, error: str | None = None) -> None:
        async with self.catalog.transaction(write=True) as conn:
            await conn.execute(
                update(shard_migrations)
                .where(shard_migrations.c.id == entry)
                .values(status=status, error=error, finished_at=_now())
            )

    async def interrupt(self, shard: str) -> None:
        """Close journal entries left running by a process that died mid-revision."""
        async with self.catalog.transaction(write=True) as conn:
            await conn.execute(
                update(shard_migrations)
                .where(
                    shard_migrations.c.shard == shard,
                    shard_migrations.c.status == MigrationStatus.RUNNING,
                )
                .values(
                    status=MigrationStatus.FAILED,
                    error="interrupted (the migrating process stopped)",
                    finished_at=_now(),
                )
            )

    async def entries(self, *, shard: str | None = None, limit: int = 50) -> list[MigrationEntry]:
        """The latest entries, newest first."""
        stmt = select(shard_migrations).order_by(shard_migrations.c.id.desc()).limit(limit)
        if shard is not None:
            stmt = stmt.where(shard_migrations.c.shard == shard)
        async with self.catalog.transaction(write=False) as conn:
            return [
                MigrationEntry(
                    r.id,
                    r.wave,
                    r.shard,
                    r.action,
                    r.from_revision,
                    r.to_revision,
                    MigrationStatus(r.status),
                    r.error,
                    r.started_at,
                    r.finished_at,
                )
                for r in await conn.execute(stmt)
            ]
