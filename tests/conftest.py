"""Shared fixtures: real SQLite files, real PostgreSQL databases, real Redis.

``deployment`` builds a three-shard deployment (the embedded default's topology) on the backend
named by the ``backend`` parameter, migrated as an SRE would (``shards upgrade``), and drops its
PostgreSQL databases afterwards. ``api`` runs the FastAPI app in-process over ASGI with the app's
real lifespan.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from domicile.router.app import create_app
from domicile.router.config import load_settings
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.api_keys import SCOPES
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY, head_revision, migrate

PG_HOST = os.environ.get("DOMICILE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DOMICILE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DOMICILE_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("DOMICILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARDS = {"ru-msk-1": "ru-msk", "eu-fra-1": "eu-fra", "us-east-1": "us-east"}
#: A shard log's leaves, integrated or still queued, in append (id) order: one statement, so an
#: entry the integrator moves meanwhile is seen exactly once.
LOG_LEAVES = (
    "SELECT leaf FROM (SELECT id, leaf FROM audit_entries"
    " UNION ALL SELECT id, leaf FROM audit_pending) AS e ORDER BY id"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
_session_dir = Path(tempfile.mkdtemp(prefix="domicile-tests-"))


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


@pytest.fixture(scope="session", autouse=True)
def _session_templates() -> Iterator[None]:
    yield
    names = [t for k, t in _templates.items() if k.startswith("postgres:")]
    names += [name for databases in _pg_pool for name in databases]
    if names:
        asyncio.run(drop_databases(names))
    shutil.rmtree(_session_dir, ignore_errors=True)


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
    shard_template = await _migrated_template(backend, SHARD_HISTORY, _session_dir)
    catalog_template = await _migrated_template(backend, CATALOG_HISTORY, _session_dir)
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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_pg_pool: list[list[str]] = []


async def _reset_or_drop(databases: list[str]) -> None:
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


@pytest.fixture
async def deployment(tmp_path: Path, backend: str) -> AsyncIterator[Deployment]:
    reuse = _pg_pool.pop() if backend == "postgres" and _pg_pool else None
    dep = await make_deployment(tmp_path, backend, reuse=reuse)
    yield dep
    if dep.databases:
        await _reset_or_drop(dep.databases)


@pytest.fixture
async def runtime(deployment: Deployment) -> AsyncIterator[Runtime]:
    async with open_runtime(deployment.settings()) as rt:
        yield rt


class Api:
    """An in-process client of the app, with one key per scope."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, keys: dict[str, str]):
        self.client = client
        self.runtime = runtime
        self.keys = keys

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    async def request(
        self, method: str, url: str, scope: str = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.auth(scope), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def register(self, subject_id: str, jurisdiction: str) -> httpx.Response:
        return await self.request(
            "POST", "/v1/subjects", json={"subject_id": subject_id, "jurisdiction": jurisdiction}
        )

    async def put(
        self, subject_id: str, collection: str, key: str, data: Any, **kwargs: Any
    ) -> httpx.Response:
        return await self.request(
            "PUT", f"/v1/subjects/{subject_id}/records/{collection}/{key}", json=data, **kwargs
        )


async def start_api(settings: Any) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        keys = {
            scope: (await runtime.api_keys.create(f"test-{scope}", {scope})).secret
            for scope in SCOPES
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://domicile") as client:
            yield Api(client, runtime, keys)


async def query_shard(dep: Deployment, shard: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Query a shard's database directly, bypassing domicile entirely."""
    url = dep.shard_urls[shard]
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split("///", 1)[1]
        with sqlite3.connect(path, timeout=30) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("$1", "?").replace("$2", "?"), args)]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[Api]:
    async for client in start_api(deployment.settings()):
        yield client


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # the suite needs the real server; .ci/run starts it
    yield REDIS_URL
    client.close()
