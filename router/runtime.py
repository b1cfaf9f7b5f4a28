"""The assembled service: engines, catalog, cache and store, built once per process (in the
app's lifespan or a CLI command) and closed at the end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from domicile.audit.service import AuditService
from domicile.router.audit_setup import audit_service
from domicile.router.config import Settings
from domicile.router.secrets import load_or_create_key, write_private
from domicile.shards.api_keys import SCOPES, ApiKeys
from domicile.shards.cache import LocalCache, PlacementCache, RedisCache
from domicile.shards.catalog import Catalog
from domicile.shards.directory import Directory
from domicile.shards.engines import is_unavailable
from domicile.shards.errors import (
    MigrationFailed,
    ShardSchemaMissing,
    ShardUnavailable,
    Unavailable,
)
from domicile.shards.migration_journal import MigrationJournal
from domicile.shards.move_journal import MoveJournal
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.schema_runner import (
    CATALOG_HISTORY,
    SHARD_HISTORY,
    UPGRADE,
    current_revision,
    head_revision,
    migrate,
    migrate_shard,
    sync_shard,
)
from domicile.shards.store import RecordStore

log = logging.getLogger("domicile")

#: How long a process starting beside another waits for that one's start-up migration.
STARTUP_MIGRATION_WAIT = 60.0


@dataclass
class Runtime:
    """The catalog's concepts are reached each through its own store: ``directory`` (every
    placement read and change), ``api_keys``, ``move_journal`` and ``migration_journal``;
    ``catalog`` itself is for the control database's schema and lifetime."""

    settings: Settings
    registry: ShardRegistry
    catalog: Catalog
    cache: PlacementCache
    directory: Directory
    api_keys: ApiKeys
    move_journal: MoveJournal
    migration_journal: MigrationJournal
    store: RecordStore
    pseudonyms: Pseudonymizer
    audit: AuditService


def _preparation(
    settings: Settings, shard: Shard, journal: MigrationJournal
) -> Callable[[], Awaitable[None]]:
    """What must hold before a shard takes writes: schema present (brought to head on the
    embedded default), identity recorded, residency guard in step with the policy."""
    head = head_revision(SHARD_HISTORY)

    async def prepare() -> None:
        try:
            revision = await current_revision(shard.engine)
        except Exception as exc:
            if is_unavailable(exc):
                raise ShardUnavailable(shard.name) from exc
            raise
        if settings.embedded and revision != head:
            revision = await _bring_to_head(shard, journal, head)
        if revision is None:
            raise ShardSchemaMissing(shard.name)
        if revision != head:
            log.warning("shard %s is at schema %s, head is %s", shard.name, revision, head)
        await sync_shard(shard, settings.topology.jurisdictions_for_shard(shard.name))

    return prepare


async def _bring_to_head(shard: Shard, journal: MigrationJournal, head: str) -> str | None:
    """Migrate an embedded shard at start-up, journaled and logged (schema.migrated) like any
    `domicile shards upgrade`. Processes starting together race for the migration lock: the
    ones that lose wait until the winner has brought the shard to head."""
    deadline = time.monotonic() + STARTUP_MIGRATION_WAIT
    while True:
        result = await migrate_shard(shard, journal, UPGRADE, head, wave="start-up")
        if result.status != "failed":
            return result.after
        revision = await current_revision(shard.engine)
        if revision == head:
            return revision
        if time.monotonic() > deadline:
            raise MigrationFailed(f"shard {shard.name}: {result.error}")
        await asyncio.sleep(0.2)


async def _prepare_shards(
    settings: Settings, registry: ShardRegistry, journal: MigrationJournal
) -> None:
    for shard in registry.all():
        shard.prepare = _preparation(settings, shard, journal)
        try:
            await shard.ensure_ready()
        except Unavailable as exc:
            # Served without it; its preparation is retried on its next write.
            log.warning("shard %s is not ready at start-up: %s", shard.name, exc)


@asynccontextmanager
async def open_runtime(settings: Settings, *, prepare: bool = True) -> AsyncIterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pseudonyms = Pseudonymizer(load_or_create_key(settings.pseudonym_key_path))
    catalog = Catalog(settings.catalog_url)
    migration_journal = MigrationJournal(catalog)
    registry = ShardRegistry(settings.topology)
    cache: PlacementCache
    if settings.redis_url:
        redis_cache = RedisCache(settings.redis_url, namespace=settings.deployment)
        await redis_cache.start()
        cache = redis_cache
    else:
        cache = LocalCache()
    try:
        if prepare:
            await migrate(catalog.engine, CATALOG_HISTORY, "upgrade", "head")
            await _prepare_shards(settings, registry, migration_journal)
        directory = Directory(catalog, cache)
        store = RecordStore(settings.topology, registry, directory, pseudonyms)
        audit = audit_service(settings, registry)
        yield Runtime(
            settings,
            registry,
            catalog,
            cache,
            directory,
            ApiKeys(catalog),
            MoveJournal(catalog),
            migration_journal,
            store,
            pseudonyms,
            audit=audit,
        )
    finally:
        await cache.close()
        await registry.dispose()
        await catalog.dispose()


async def bootstrap_admin_key(runtime: Runtime) -> None:
    """First start of the embedded default: write an admin key to a 0600 file and say where."""
    if not runtime.settings.embedded or await runtime.api_keys.count() > 0:
        return
    path = runtime.settings.data_dir / "admin.key"
    new = await runtime.api_keys.create_first("bootstrap-admin", SCOPES)
    if new is None:  # another process starting beside this one made it
        return
    path.unlink(missing_ok=True)
    write_private(path, new.secret.encode() + b"\n")
    log.warning("created an admin API key; its secret is in %s", path)
