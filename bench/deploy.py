"""The throw-away deployment every workload runs against, built on the local servers and dropped
at the end: three PostgreSQL shard databases and a PostgreSQL catalog (plus Redis) for domicile,
one PostgreSQL database for the baselines, and the same subjects and records in both.

Hot subjects (W1-W3, the lookup workload, library paths) are registered, with an e-mail lookup
key each, and written through domicile itself, audit entries included. Cold subjects (W4) are
bulk-loaded with COPY, the way an import would: placed by the same rendezvous choice and
pseudonyms, but never resolved before W4 reads them, so neither the router's LRU nor Redis has
seen them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
import redis.asyncio as aioredis
import uvloop

from domicile.audit.events import Actor
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from domicile.shards.catalog_schema import directory as directory_table
from domicile.shards.engines import create_engine
from domicile.shards.placement import choose_home
from domicile.shards.schema import records as records_table
from domicile.shards.schema import subjects as subjects_table
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, migrate
from domicile.shards.states import PlacementState, SubjectState
from domicile.shards.store import encode_data

#: The tables' columns, in the order rows are built for COPY.
RECORD_COLUMNS = [column.name for column in records_table.columns]
DIRECTORY_COLUMNS = [column.name for column in directory_table.columns]
SUBJECT_COLUMNS = [column.name for column in subjects_table.columns]

T = TypeVar("T")

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

REGIONS = {"ru-msk": "RU", "eu-fra": "DE", "us-east": "US"}
SHARDS = {"ru-msk-1": "ru-msk", "eu-fra-1": "eu-fra", "us-east-1": "us-east"}
#: Hot and cold subjects cycle through these, so every shard holds its share.
JURISDICTIONS = ("RU", "DE", "US", "FR", "BR")
COLLECTION, KEY = "bench", "profile"

# The baseline's table: what a single-region team would create for the same records.
BASELINE_SCHEMA = """
CREATE TABLE records (
    subject_id  text        NOT NULL,
    collection  text        NOT NULL,
    key         text        NOT NULL,
    data        text        NOT NULL,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (subject_id, collection, key)
)
"""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, the loop the servers use."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def pg_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def hot_id(i: int) -> str:
    return f"hot-{i}"


def hot_email(i: int) -> str:
    """The hot subject's e-mail lookup key (``bench/load.lua``'s lookup mode builds the same)."""
    return f"{hot_id(i)}@example.org"


def cold_id(i: int) -> str:
    return f"cold-{i}"


def record_body(i: int) -> dict[str, Any]:
    """A typical profile record, about 300 bytes of JSON."""
    return {
        "name": f"Subject Number {i}",
        "email": f"subject{i}@example.org",
        "phone": f"+7 495 {i:07d}",
        "address": {"street": f"{i} Tverskaya", "city": "Moscow", "postcode": "125009"},
        "preferences": {"language": "ru", "newsletter": i % 2 == 0, "theme": "dark"},
        "tags": ["customer", "bench", f"cohort-{i % 10}"],
        "score": i * 7 % 1000,
    }


def topology_toml(shard_urls: dict[str, str], catalog_url: str, extra_shards: str = "") -> str:
    parts = [f'[regions.{name}]\ncountry = "{country}"' for name, country in REGIONS.items()]
    parts += [
        f'[shards.{shard}]\nregion = "{SHARDS[shard]}"\nurl = "{url}"'
        for shard, url in shard_urls.items()
    ]
    if extra_shards:
        parts.append(extra_shards)
    parts += [
        '[policy.RU]\nstore_in = ["ru-msk"]',
        '[policy.EU]\nstore_in = ["eu-fra"]',
        "[policy.CN]\nstore_in = []",
        '[policy.default]\nstore_in = ["us-east"]',
        f'[catalog]\nurl = "{catalog_url}"',
    ]
    return "\n\n".join(parts) + "\n"


@dataclass
class Deployment:
    root: Path
    name: str
    config: Path
    shard_dbs: dict[str, str]
    catalog_db: str
    baseline_db: str
    api_key: str
    hot: int
    cold: int

    @property
    def databases(self) -> list[str]:
        return [*self.shard_dbs.values(), self.catalog_db, self.baseline_db]

    def write_config(self, path: Path, extra_shards: str = "") -> Path:
        """This deployment's config, optionally with more shards (W7)."""
        urls = {shard: pg_url(db) for shard, db in self.shard_dbs.items()}
        head = f'deployment = "{self.name}"\ndata_dir = "{self.root / "data"}"\n'
        head += f'[redis]\nurl = "{REDIS_URL}"\n\n'
        path.write_text(head + topology_toml(urls, pg_url(self.catalog_db), extra_shards))
        return path


async def _admin(sql: list[str]) -> None:
    conn = await asyncpg.connect(pg_dsn("postgres"))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def create(hot: int, cold: int) -> Deployment:
    tag = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="domicile-bench-"))
    dep = Deployment(
        root=root,
        name=f"bench-{tag}",
        config=root / "domicile.toml",
        shard_dbs={shard: f"bench_{tag}_{shard.replace('-', '_')}" for shard in SHARDS},
        catalog_db=f"bench_{tag}_catalog",
        baseline_db=f"bench_{tag}_baseline",
        api_key="",
        hot=hot,
        cold=cold,
    )
    await _admin([f'CREATE DATABASE "{db}"' for db in dep.databases])
    dep.write_config(dep.config)
    for db, history in [(db, SHARD_HISTORY) for db in dep.shard_dbs.values()] + [
        (dep.catalog_db, CATALOG_HISTORY)
    ]:
        engine = create_engine(pg_url(db))
        try:
            await migrate(engine, history, "upgrade", "head")
        finally:
            await engine.dispose()
    await _seed(dep)
    return dep


async def _seed(dep: Deployment) -> None:
    settings = load_settings(dep.config)
    async with open_runtime(settings) as runtime:
        store = runtime.store
        dep.api_key = (
            await runtime.api_keys.create("bench", {"records:read", "records:write"})
        ).secret
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                jurisdiction = JURISDICTIONS[i % len(JURISDICTIONS)]
                await store.register(
                    hot_id(i), jurisdiction, Actor(key_id="bench"), {"email": hot_email(i)}
                )
                await store.put(hot_id(i), COLLECTION, KEY, record_body(i), Actor(key_id="bench"))

        await asyncio.gather(*(one(i) for i in range(dep.hot)))
        # Start from a log's steady state, its entries in the tree (as a server leaves them):
        # statistics gathered over a backlog of unintegrated entries would mislead the planner.
        for shard_log in runtime.audit.logs.values():
            await shard_log.integrate()

        # Cold subjects: COPY straight into the catalog and the home shards.
        now = datetime.now(UTC)
        directory: list[tuple[Any, ...]] = []
        subjects: dict[str, list[tuple[Any, ...]]] = {shard: [] for shard in SHARDS}
        records: dict[str, list[tuple[Any, ...]]] = {shard: [] for shard in SHARDS}
        for i in range(dep.cold):
            jurisdiction = JURISDICTIONS[i % len(JURISDICTIONS)]
            pseudonym = runtime.pseudonyms.subject(cold_id(i))
            shard = choose_home(settings.topology, jurisdiction, pseudonym).name
            stored = encode_data(record_body(i))
            digest = hashlib.sha256(stored).hexdigest()
            directory.append((pseudonym, jurisdiction, shard, 1, PlacementState.ACTIVE, now, now))
            subjects[shard].append(
                (pseudonym, cold_id(i), jurisdiction, SubjectState.HOME, 1, now, now)
            )
            records[shard].append(
                (pseudonym, COLLECTION, KEY, stored.decode(), 1, jurisdiction, digest, now, now)
            )
    await _copy(
        dep.catalog_db,
        "directory",
        directory,
        DIRECTORY_COLUMNS,
    )
    for shard, db in dep.shard_dbs.items():
        await _copy(
            db,
            "subjects",
            subjects[shard],
            SUBJECT_COLUMNS,
        )
        await _copy(
            db,
            "records",
            records[shard],
            RECORD_COLUMNS,
        )
    rows = [
        (sid, COLLECTION, KEY, orjson.dumps(record_body(i)).decode(), 1, now)
        for prefix, count in ((hot_id, dep.hot), (cold_id, dep.cold))
        for i in range(count)
        for sid in [prefix(i)]
    ]
    conn = await asyncpg.connect(pg_dsn(dep.baseline_db))
    try:
        await conn.execute(BASELINE_SCHEMA)
        await conn.copy_records_to_table("records", records=rows)
    finally:
        await conn.close()
    for db in dep.databases:
        conn = await asyncpg.connect(pg_dsn(db))
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()


async def _copy(db: str, table: str, rows: list[tuple[Any, ...]], columns: list[str]) -> None:
    conn = await asyncpg.connect(pg_dsn(db))
    try:
        await conn.copy_records_to_table(table, records=rows, columns=columns)
    finally:
        await conn.close()


async def wait_for_integration(dep: Deployment) -> None:
    """Until domicile's integrator has given every committed audit entry its index (at most a
    minute: a stuck integrator shows as a warning, not as a hung benchmark)."""
    conns = [await asyncpg.connect(pg_dsn(db)) for db in dep.shard_dbs.values()]
    try:
        for _ in range(300):
            counts = [await conn.fetchval("SELECT count(*) FROM audit_pending") for conn in conns]
            if not any(counts):
                return
            await asyncio.sleep(0.2)
        print(f"bench: warning: {sum(counts)} audit entries still not integrated", flush=True)
    finally:
        for conn in conns:
            await conn.close()


async def destroy(dep: Deployment) -> None:
    await _admin([f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in dep.databases])
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"domicile:{dep.name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    shutil.rmtree(dep.root, ignore_errors=True)
