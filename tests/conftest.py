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
from tests.support.engines import without_statement_pools

REDIS_URL = os.environ.get("DOMICILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _session_databases() -> Iterator[None]:
    yield
    remove_session_databases()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
#: PostgreSQL with no statement pools (tests.support.engines): the SQLAlchemy paths of store and
#: catalog, which otherwise run on SQLite only. A third run costs time, so only the tests marked
#: ``general_path`` take it: the record API (tests/router/test_app.py), the store statements and
#: the log store (tests/shards), and the in-process moves and comply (tests/e2e: test_move,
#: test_comply, test_online, test_read_your_writes, and test_move_crash's crash at each step).
GENERAL_PATH = pytest.param("postgres-general", marks=pytest.mark.postgres)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that takes a ``backend`` on each backend, unless it names its own."""
    if "backend" not in metafunc.fixturenames or any(
        "backend" in _argnames(mark) for mark in metafunc.definition.iter_markers("parametrize")
    ):
        return
    general = metafunc.definition.get_closest_marker("general_path") is not None
    metafunc.parametrize(
        "backend", [*BACKENDS, GENERAL_PATH] if general else BACKENDS, indirect=True
    )


def _argnames(parametrize: pytest.Mark) -> list[str]:
    names = parametrize.args[0] if parametrize.args else parametrize.kwargs["argnames"]
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database a deployment is made on: "sqlite" or "postgres"."""
    if request.param == "postgres-general":
        without_statement_pools(monkeypatch)
        return "postgres"
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
