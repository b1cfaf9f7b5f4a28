"""Shared fixtures: real SQLite files, real PostgreSQL databases, real Redis.

``deployment`` builds a three-shard deployment (the embedded default's topology) on the backend
named by the ``backend`` parameter, migrated as an SRE would (``shards upgrade``), and drops its
PostgreSQL databases afterwards. ``api`` runs the FastAPI app in-process over ASGI with the app's
real lifespan.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from router.app import create_app
from router.config import load_settings
from router.runtime import Runtime, open_runtime
from shards.catalog import SCOPES
from shards.schema_runner import SHARD_HISTORY, migrate

PG_HOST = os.environ.get("DOMICILE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DOMICILE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DOMICILE_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("DOMICILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARDS = {"ru-msk-1": "ru-msk", "eu-fra-1": "eu-fra", "us-east-1": "us-east"}


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


async def make_deployment(
    tmp_path: Path, backend: str, extra: str = "", urls: dict[str, str] | None = None
) -> Deployment:
    data_dir = tmp_path / "data"
    databases: list[str] = []
    if backend == "postgres":
        prefix = f"dom_{uuid.uuid4().hex[:10]}"
        databases = [f"{prefix}_{s.replace('-', '_')}" for s in SHARDS] + [f"{prefix}_catalog"]
        await create_databases(databases)
        shard_urls = {s: pg_url(db) for s, db in zip(SHARDS, databases, strict=False)}
        catalog_url = pg_url(databases[-1])
    else:
        shard_urls = {s: f"sqlite+aiosqlite:///{data_dir}/shards/{s}.sqlite" for s in SHARDS}
        catalog_url = f"sqlite+aiosqlite:///{data_dir}/catalog.sqlite"
    shard_urls.update(urls or {})
    config = tmp_path / "domicile.toml"
    config.write_text(f'data_dir = "{data_dir}"\n' + topology_toml(shard_urls, catalog_url, extra))
    deployment = Deployment(backend, config, data_dir, shard_urls, databases)
    settings = deployment.settings()
    async with open_runtime(settings, prepare=False) as runtime:
        for shard in runtime.registry.all():
            await migrate(shard.engine, SHARD_HISTORY, "upgrade", "head")
    return deployment


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def deployment(tmp_path: Path, backend: str) -> AsyncIterator[Deployment]:
    dep = await make_deployment(tmp_path, backend)
    yield dep
    if dep.databases:
        await drop_databases(dep.databases)


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
            scope: (await runtime.catalog.create_key(f"test-{scope}", {scope})).secret
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
        with sqlite3.connect(path) as conn:
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
