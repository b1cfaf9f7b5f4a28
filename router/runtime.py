"""The assembled service: engines, catalog, cache and store, built once per process (in the
app's lifespan or a CLI command) and closed at the end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from domicile.audit.service import AuditService
from domicile.router.audit_setup import audit_service
from domicile.router.config import Settings
from domicile.router.secrets import load_or_create_key, write_private
from domicile.shards.api_keys import SCOPES, ApiKeys
from domicile.shards.cache import LocalCache, PlacementCache, RedisCache
from domicile.shards.catalog import Catalog
from domicile.shards.directory import Directory
from domicile.shards.errors import CatalogUnavailable, DomicileError, MigrationFailed
from domicile.shards.faults import Cause, Fault, classify
from domicile.shards.files import private_dir, tighten
from domicile.shards.lookup_index import LookupIndex
from domicile.shards.lookup_keys import LookupKeys
from domicile.shards.lookups import LookupFinder
from domicile.shards.migration_journal import MigrationJournal
from domicile.shards.move_journal import MoveJournal
from domicile.shards.moves import Mover, process_owner
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.relocation import REASON as RELOCATION_REASON
from domicile.shards.relocation import Relocator
from domicile.shards.schema_runner import (
    CATALOG_HISTORY,
    SHARD_HISTORY,
    UPGRADE,
    check_identity,
    head_revision,
    migrate,
    migrate_shard,
    shard_revision,
    sync_shard,
)
from domicile.shards.states import MoveState
from domicile.shards.store import RecordStore
from domicile.shards.tls import TlsMode, is_loopback

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
    lookups: LookupFinder
    pseudonyms: Pseudonymizer
    audit: AuditService
    #: Why each shard not ready at start-up was not (by name); why the catalog was not.
    shard_faults: dict[str, str] = field(default_factory=dict)
    catalog_fault: str | None = None
    catalog_migrated: bool = True

    async def migrate_catalog_when_back(self, every: float = 2.0) -> None:
        """For a server that started without its catalog: bring the catalog's schema to head
        as soon as the catalog answers (until then, what needs it answers 503)."""
        while not self.catalog_migrated:
            await asyncio.sleep(every)
            try:
                await _migrate_catalog(self.catalog)
            except CatalogUnavailable:
                continue
            self.catalog_migrated = True
            log.warning("the catalog database is available again; its schema is at head")


def _prepare(settings: Settings, shard: Shard, journal: MigrationJournal) -> None:
    """What must hold before a shard serves: schema present (brought to head on the embedded
    default) and identity its own; before it takes writes: residency guard in step with the
    policy."""
    head = head_revision(SHARD_HISTORY)

    async def verify() -> None:
        revision = await shard_revision(shard)
        if settings.embedded and revision != head:
            revision = await _bring_to_head(shard, journal, head)
        if revision is None:
            raise shard.unavailable(Fault(Cause.SCHEMA_MISSING))
        if revision != head:
            log.warning("shard %s is at schema %s, head is %s", shard.name, revision, head)
        await check_identity(shard)

    async def sync() -> None:
        topology = settings.topology
        await sync_shard(shard, topology.jurisdictions_for_shard(shard.name), topology)

    shard.verify, shard.sync = verify, sync


async def _bring_to_head(shard: Shard, journal: MigrationJournal, head: str) -> str | None:
    """Migrate an embedded shard at start-up, journaled and logged (schema.migrated) like any
    `domicile shards upgrade`. Processes starting together race for the migration lock: the
    ones that lose wait until the winner has brought the shard to head."""
    deadline = time.monotonic() + STARTUP_MIGRATION_WAIT
    while True:
        result = await migrate_shard(shard, journal, UPGRADE, head, wave="start-up")
        if result.status != "failed":
            return result.after
        if result.fault is not None and result.fault.cause != Cause.TIMED_OUT:
            raise shard.unavailable(result.fault)  # not the race: the database's state
        revision = await shard_revision(shard)
        if revision == head:
            return revision
        if time.monotonic() > deadline:
            raise MigrationFailed(f"shard {shard.name}: {result.error}")
        await asyncio.sleep(0.2)


async def _prepare_shards(
    settings: Settings, registry: ShardRegistry, journal: MigrationJournal
) -> dict[str, str]:
    """Prepare every shard; returns why each one that is not ready is not. Those are served
    without: their preparation is retried on their next request. PostgreSQL shards are
    prepared at once (a silent one costs its timeout once, not once per shard after it); the
    embedded default's one after another, since its preparation runs alembic, which cannot
    run twice at once in one process."""
    shards = registry.all()
    for shard in shards:
        _prepare(settings, shard, journal)
    outcomes: list[DomicileError | None]
    if settings.embedded:
        outcomes = [await _outcome(shard.ensure_ready()) for shard in shards]
    else:
        outcomes = await asyncio.gather(*(_outcome(shard.ensure_ready()) for shard in shards))
    return {
        shard.name: str(outcome)
        for shard, outcome in zip(shards, outcomes, strict=True)
        if outcome is not None
    }


async def _outcome(preparation: Awaitable[None]) -> DomicileError | None:
    try:
        await preparation
    except DomicileError as exc:
        return exc
    return None


async def _migrate_catalog(catalog: Catalog) -> None:
    try:
        await migrate(catalog.engine, CATALOG_HISTORY, UPGRADE, "head")
    except Exception as exc:
        if (fault := classify(exc)) is not None:
            raise CatalogUnavailable(fault) from exc
        raise


def _warn_of_weak_transport(settings: Settings) -> None:
    """``require`` and ``disable`` toward a host outside the loopback range are allowed, and
    said."""
    parts = [(f"shard {s.name}", s.url, s.tls) for s in settings.topology.shards.values()]
    parts.append(("the catalog", settings.catalog_url, settings.catalog_tls))
    for part, url, tls in parts:
        host = make_url(url).host
        mode = tls.mode_for(host)
        if not is_loopback(host) and mode != TlsMode.VERIFY_FULL:
            what = "unencrypted" if mode == TlsMode.DISABLE else "encrypted but unverified"
            log.warning("%s: the connection to %s is %s (tls mode %s)", part, host, what, mode)


def _relocator(
    settings: Settings,
    registry: ShardRegistry,
    directory: Directory,
    journal: MoveJournal,
    pseudonyms: Pseudonymizer,
) -> Relocator:
    mover = Mover(settings.topology, registry, directory, journal, pseudonyms)

    async def move_now(subject_id: str, target: str) -> tuple[MoveState, str | None]:
        moved = await mover.move_subject(subject_id, target, RELOCATION_REASON)
        return moved.state, moved.error

    return Relocator(journal, move_now)


@asynccontextmanager
async def open_runtime(settings: Settings, *, prepare: bool = True) -> AsyncIterator[Runtime]:
    private_dir(settings.data_dir)
    tighten(settings.data_dir)
    pseudonyms = Pseudonymizer(load_or_create_key(settings.pseudonym_key_path))
    lookup_keys = LookupKeys(settings.lookup_kinds, lookup_secret(settings))
    catalog = Catalog(
        settings.catalog_url,
        connect_timeout=settings.catalog_connect_timeout,
        statement_timeout=settings.catalog_statement_timeout,
        tls=settings.catalog_tls,
    )
    _warn_of_weak_transport(settings)
    migration_journal = MigrationJournal(catalog)
    registry = ShardRegistry(settings.topology)
    cache: PlacementCache
    if settings.redis_url:
        redis_cache = RedisCache(
            settings.redis_url, namespace=settings.deployment, ca=settings.redis_ca
        )
        await redis_cache.start()
        cache = redis_cache
    else:
        cache = LocalCache()
    try:
        shard_faults: dict[str, str] = {}
        catalog_fault: str | None = None
        catalog_migrated = not prepare
        if prepare:
            try:
                await _migrate_catalog(catalog)
                catalog_migrated = True
            except CatalogUnavailable as exc:
                catalog_fault = str(exc)  # what needs the catalog answers so meanwhile
            shard_faults = await _prepare_shards(settings, registry, migration_journal)
        directory = Directory(catalog, cache)
        store = RecordStore(
            settings.topology,
            registry,
            directory,
            pseudonyms,
            lookup_keys,
            LookupIndex(catalog, process_owner()),
        )
        move_journal = MoveJournal(catalog)
        store.relocator = _relocator(settings, registry, directory, move_journal, pseudonyms)
        audit = audit_service(settings, registry)
        yield Runtime(
            settings,
            registry,
            catalog,
            cache,
            directory,
            ApiKeys(catalog),
            move_journal,
            migration_journal,
            store,
            LookupFinder(store),
            pseudonyms,
            audit=audit,
            shard_faults=shard_faults,
            catalog_fault=catalog_fault,
            catalog_migrated=catalog_migrated,
        )
    finally:
        await cache.close()
        await registry.dispose()
        await catalog.dispose()


def lookup_secret(settings: Settings) -> bytes:
    """The lookup secret: from the environment, else ``<data dir>/lookup.key`` (created on
    first start, 0600), a key of its own beside the pseudonym key."""
    if settings.lookup_secret is not None:
        return settings.lookup_secret
    return load_or_create_key(settings.lookup_key_path)


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
