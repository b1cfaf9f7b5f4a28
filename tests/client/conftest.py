"""A real server for the client's tests, one per module and backend: ``domicile serve`` on the
embedded default (SQLite, no Redis; the first day's setup), and on PostgreSQL with Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import REDIS_URL
from tests.support.deployment import Deployment, drop_databases, make_deployment, query_sqlite
from tests.support.server import Server, serve


@dataclass(frozen=True)
class Target:
    """The running server, and its shards' databases for a test to reach behind its back."""

    server: Server
    shard_urls: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def set_fence(self, shard: str, subject_id: str, state: str) -> None:
        """Set a subject's fence on its shard, as a move does (``moving_out``: writes pause)."""
        sql = "UPDATE subjects SET state = $1 WHERE subject_id = $2"
        url = self.shard_urls[shard]
        if url.startswith("sqlite"):
            query_sqlite(url.split("///", 1)[1], sql, (state, subject_id))
            return

        async def update() -> None:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await conn.execute(sql, state, subject_id)
            finally:
                await conn.close()

        asyncio.run(update())


def _embedded_shards(data_dir: Path) -> dict[str, str]:
    return {
        shard: f"sqlite+aiosqlite:///{data_dir}/shards/{shard}.sqlite"
        for shard in ("ru-msk-1", "eu-fra-1", "us-east-1")
    }


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])],
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    root = tmp_path_factory.mktemp(f"client-{request.param}")
    if request.param == "embedded":
        with serve(root / "data") as running:
            yield Target(running, _embedded_shards(root / "data"))
        return
    dep: Deployment = asyncio.run(
        make_deployment(root, "postgres", extra=f'[redis]\nurl = "{REDIS_URL}"')
    )
    try:
        with serve(dep.data_dir, dep.config) as running:
            yield Target(running, dep.shard_urls)
    finally:
        asyncio.run(drop_databases(dep.databases))


@pytest.fixture(scope="module")
def admin_key(target: Target) -> str:
    return target.server.key("admin")


@pytest.fixture
def subject() -> str:
    """A subject id no other test uses: the tests of a module share one server."""
    return f"s-{uuid.uuid4().hex[:12]}"
