"""Schema of shards and catalog: alembic histories applied programmatically, one database at a
time, plus the residency guard's jurisdiction list kept in step with the policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from shards.errors import DomicileError
from shards.registry import Shard
from shards.schema import shard_identity, shard_jurisdictions

SHARD_HISTORY = "shard"
CATALOG_HISTORY = "catalog"


class ShardIdentityMismatch(DomicileError):
    code = "shard_identity_mismatch"


def alembic_config(history: str, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent / history))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision(history: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(history)).get_current_head()
    assert head is not None
    return head


def _run(connection: Connection, cfg: Config, action: str, revision: str) -> None:
    cfg.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


async def migrate(engine: AsyncEngine, history: str, action: str, revision: str) -> None:
    cfg = alembic_config(history)
    async with engine.connect() as conn:
        await conn.run_sync(_run, cfg, action, revision)
        await conn.commit()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def sync_shard(shard: Shard, jurisdictions: frozenset[str]) -> None:
    """Record the shard's identity (first start) or check it, and make its residency guard
    admit exactly ``jurisdictions``."""
    async with shard.write() as conn:
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
            raise ShardIdentityMismatch(
                f"the database configured for shard {shard.name} belongs to shard {row.name}"
            )
        present = set((await conn.execute(select(shard_jurisdictions.c.code))).scalars())
        if present != jurisdictions:
            await conn.execute(delete(shard_jurisdictions))
            rows: list[dict[str, Any]] = [{"code": code} for code in sorted(jurisdictions)]
            if rows:
                await conn.execute(insert(shard_jurisdictions), rows)
