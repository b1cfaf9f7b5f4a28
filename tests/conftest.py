"""Shared fixtures: real SQLite files, real PostgreSQL databases, real Redis.

``deployment`` builds a three-shard deployment (the embedded default's topology) on the backend
named by the ``backend`` parameter, migrated as an SRE would (``shards upgrade``), and empties
its PostgreSQL databases for the next test afterwards. ``api`` runs the FastAPI app in-process
over ASGI with the app's real lifespan. The helpers behind them are in ``tests.support``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from domicile.router.runtime import Runtime, open_runtime
from tests.support.api import Api, start_api
from tests.support.deployment import (
    Deployment,
    make_deployment,
    release_databases,
    remove_session_databases,
    reusable_databases,
)

REDIS_URL = os.environ.get("DOMICILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _session_databases() -> Iterator[None]:
    yield
    remove_session_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def deployment(tmp_path: Path, backend: str) -> AsyncIterator[Deployment]:
    reuse = reusable_databases() if backend == "postgres" else None
    dep = await make_deployment(tmp_path, backend, reuse=reuse)
    yield dep
    if dep.databases:
        await release_databases(dep.databases)


@pytest.fixture
async def runtime(deployment: Deployment) -> AsyncIterator[Runtime]:
    async with open_runtime(deployment.settings()) as rt:
        yield rt


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
