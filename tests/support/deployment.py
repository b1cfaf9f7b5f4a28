"""Deployments on real databases: three shards and a catalog, on SQLite files or PostgreSQL
databases, migrated as an SRE would (``shards upgrade``); and direct queries of a shard's
database, bypassing domicile entirely."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from domicile.router.config import load_settings
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, head_revision, migrate

PG_HOST = os.environ.get("DOMICILE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DOMICILE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DOMICILE_TEST_PG_USER", "postgres")
SHARDS = {"ru-msk-1": "ru-msk", "eu-fra-1": "eu-fra", "us-east-1": "us-east"}
#: A shard log's leaves, integrated or still queued, in append (id) order: one statement, so an
#: entry the integrator moves meanwhile is seen exactly once.
LOG_LEAVES = (
    "SELECT leaf FROM (SELECT id, leaf FROM audit_entries"
    " UNION ALL SELECT id, leaf FROM audit_pending) AS e ORDER BY id"
)


def pg_url(database: str, driver: str = "postgresql+asyncpg", port: int = PG_PORT) -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{port}/{database}"


async def create_databases(names: list[str], port: int = PG_PORT) -> None:
    conn = await asyncpg.connect(pg_url("postgres", "postgresql", port))
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(names: list[str], port: int = PG_PORT) -> None:
    conn = await asyncpg.connect(pg_url("postgres", "postgresql", port))
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def topology_toml(urls: dict[str, str], catalog_url: str, extra: str = "") -> str:
    lines = [
        'deployment = "test"',
        extra,
        '[regions.ru-msk]\ncountry = "RU"',
        '[regions.eu-fra]\ncountry = "DE"\nprovider = "Example Cloud"',
        '[regions.us-east]\ncountry = "US"',
    ]
    for shard, url in urls.items():
        lines.append(f'[shards.{shard}]\nregion = "{SHARDS[shard]}"\nurl = "{url}"')
    lines += [
        '[policy.RU]\nstore_in = ["ru-msk"]',
        '[policy.EU]\nstore_in = ["eu-fra"]',
        "[policy.CN]\nstore_in = []",
        '[policy.default]\nstore_in = ["us-east"]',
        f'[catalog]\nurl = "{catalog_url}"',
    ]
    return "\n\n".join(lines) + "\n"


@dataclass
class Deployment:
    backend: str
    config: Path
    data_dir: Path
    shard_urls: dict[str, str]
    databases: list[str]

    def settings(self) -> Any:
        return load_settings(self.config)


_templates: dict[str, str] = {}


@functools.cache
def _session_dir() -> Path:
    """The SQLite templates' folder, made on first use: not on import, as by xdist's controller,
    which runs no test and so would leave it behind."""
    return Path(tempfile.mkdtemp(prefix="domicile-tests-"))


async def _migrated_template(backend: str, history: str, tmp_root: Path) -> str:
    """A database (PostgreSQL) or file (SQLite) migrated to head once per test session; each
    test's databases are cheap copies of it."""
    key = f"{backend}:{history}"
    if key in _templates:
        return _templates[key]
    from domicile.shards.engines import create_engine

    if backend == "postgres":
        name = f"dom_tmpl_{uuid.uuid4().hex[:8]}_{history}"
        await create_databases([name])
        url, template = pg_url(name), name
    else:
        path = tmp_root / f"template-{history}.sqlite"
        url, template = f"sqlite+aiosqlite:///{path}", str(path)
    engine = create_engine(url)
    try:
        await migrate(engine, history, "upgrade", "head")
    finally:
        await engine.dispose()
    _templates[key] = template
    return template


async def migrated_template(backend: str, history: str) -> str:
    """The session's migrated template: a database name (PostgreSQL) or a file path (SQLite)."""
    return await _migrated_template(backend, history, _session_dir())


async def make_deployment(
    tmp_path: Path,
    backend: str,
    extra: str = "",
    urls: dict[str, str] | None = None,
    reuse: list[str] | None = None,
) -> Deployment:
    """Three shards and a catalog at schema head, as after ``domicile shards upgrade``.

    The caller owns any PostgreSQL databases created (``Deployment.databases``)."""
    data_dir = tmp_path / "data"
    databases: list[str] = []
    shard_template = await _migrated_template(backend, SHARD_HISTORY, _session_dir())
    catalog_template = await _migrated_template(backend, CATALOG_HISTORY, _session_dir())
    if backend == "postgres":
        if reuse is not None:
            databases = reuse
        else:
            prefix = f"dom_{uuid.uuid4().hex[:10]}"
            databases = [f"{prefix}_{s.replace('-', '_')}" for s in SHARDS] + [f"{prefix}_catalog"]
            conn = await asyncpg.connect(pg_url("postgres", "postgresql"))
            try:
                for name in databases:
                    template = catalog_template if name.endswith("_catalog") else shard_template
                    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            finally:
                await conn.close()
        shard_urls = {s: pg_url(db) for s, db in zip(SHARDS, databases, strict=False)}
        catalog_url = pg_url(databases[-1])
    else:
        (data_dir / "shards").mkdir(parents=True)
        shard_urls = {}
        for shard in SHARDS:
            target = data_dir / "shards" / f"{shard}.sqlite"
            shutil.copyfile(shard_template, target)
            shard_urls[shard] = f"sqlite+aiosqlite:///{target}"
        shutil.copyfile(catalog_template, data_dir / "catalog.sqlite")
        catalog_url = f"sqlite+aiosqlite:///{data_dir}/catalog.sqlite"
    shard_urls.update(urls or {})
    config = tmp_path / "domicile.toml"
    config.write_text(f'data_dir = "{data_dir}"\n' + topology_toml(shard_urls, catalog_url, extra))
    return Deployment(backend, config, data_dir, shard_urls, databases)


_pg_pool: list[list[str]] = []


def reusable_databases() -> list[str] | None:
    """A set of PostgreSQL databases a finished test left empty at schema head, if any."""
    return _pg_pool.pop() if _pg_pool else None


async def release_databases(databases: list[str]) -> None:
    """Empty a used set of databases for the next test, or drop it if its schema changed."""
    heads = {"shard": head_revision(SHARD_HISTORY), "catalog": head_revision(CATALOG_HISTORY)}
    for name in databases:
        conn = await asyncpg.connect(pg_url(name, "postgresql"))
        try:
            revision = await conn.fetchval("SELECT version_num FROM alembic_version")
            if revision != heads["catalog" if name.endswith("_catalog") else "shard"]:
                raise LookupError(name)
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
            if tables:
                names = ", ".join(f'"{t[0]}"' for t in tables)
                await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        except (LookupError, asyncpg.PostgresError):
            await conn.close()
            await drop_databases(databases)
            return
        await conn.close()
    _pg_pool.append(databases)


def remove_session_databases() -> None:
    """At the end of the session: drop the templates and the databases kept for reuse."""
    names = [t for k, t in _templates.items() if k.startswith("postgres:")]
    names += [name for databases in _pg_pool for name in databases]
    if names:
        asyncio.run(drop_databases(names))
    if _session_dir.cache_info().currsize:
        shutil.rmtree(_session_dir(), ignore_errors=True)


def query_sqlite(path: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path, timeout=30) as conn:
        return [tuple(r) for r in conn.execute(sql.replace("$1", "?").replace("$2", "?"), args)]


async def query_shard(dep: Deployment, shard: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Query a shard's database directly, bypassing domicile entirely."""
    url = dep.shard_urls[shard]
    if url.startswith("sqlite"):
        # In a thread: waiting for the file's lock on the event loop would stop the in-process
        # app (whose transaction holds that lock) from ever finishing, until the busy timeout.
        return await asyncio.to_thread(query_sqlite, url.split("///", 1)[1], sql, args)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()
