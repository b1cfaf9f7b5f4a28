"""A shard's PostgreSQL server stops mid-test: its subjects get 503 + Retry-After, everybody else
is served as usual, and service resumes without a restart once the server is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from domicile.shards.engines import create_engine
from domicile.shards.schema_runner import SHARD_HISTORY, migrate
from tests.support.api import start_api
from tests.support.deployment import create_databases, drop_databases, make_deployment, pg_url
from tests.support.pgcluster import Cluster

pytestmark = pytest.mark.anyio


@pytest.mark.postgres
async def test_shard_down_costs_only_its_subjects(tmp_path: Path, cluster: Cluster) -> None:
    await create_databases(["us_east_1"], port=cluster.port)
    us_url = pg_url("us_east_1", port=cluster.port)
    engine = create_engine(us_url)
    await migrate(engine, SHARD_HISTORY, "upgrade", "head")
    await engine.dispose()
    dep = await make_deployment(tmp_path, "postgres", urls={"us-east-1": us_url})
    try:
        async for api in start_api(dep.settings()):
            await api.register("ann", "US")
            await api.register("hans", "DE")
            await api.put("ann", "profile", "main", {"name": "Ann"})
            await api.put("hans", "profile", "main", {"name": "Hans"})

            cluster.stop()
            for method, path, body in (
                ("GET", "/v1/subjects/ann/records/profile/main", None),
                ("PUT", "/v1/subjects/ann/records/profile/main", {"name": "Ann 2"}),
                ("GET", "/v1/subjects/ann/export", None),
            ):
                down = await api.request(method, path, json=body)
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"].isdigit()
                assert down.json()["error"]["code"] == "shard_unreachable"
                assert "us-east-1" in down.json()["error"]["message"]
            # Other shards carry on, reads and writes alike.
            ok = await api.put("hans", "profile", "main", {"name": "Hans 2"})
            assert ok.status_code == 200
            assert (await api.register("marie", "FR")).status_code == 201
            # A new subject for the down shard is refused retryably; nothing lands elsewhere.
            refused = await api.register("joao", "BR")
            assert refused.status_code == 503
            shards = {
                s["name"]: s for s in (await api.request("GET", "/v1/shards")).json()["shards"]
            }
            assert shards["us-east-1"]["health"] == "down"
            assert shards["eu-fra-1"]["health"] == "up"
            assert (
                'cause="unreachable",region="us-east",shard="us-east-1"} 0.0'
                in (await api.client.get("/metrics")).text
            )

            cluster.start()
            statuses = []
            for _ in range(20):
                got = await api.request("GET", "/v1/subjects/ann/records/profile/main")
                statuses.append(got.status_code)
                if got.status_code == 200:
                    break
                await asyncio.sleep(0.25)
            assert statuses[-1] == 200, statuses
            assert got.json()["data"] == {"name": "Ann"}
            assert (await api.register("joao", "BR")).status_code == 201
    finally:
        await drop_databases(dep.databases)


@pytest.mark.postgres
async def test_router_starts_with_a_shard_down(tmp_path: Path, cluster: Cluster) -> None:
    await create_databases(["us_east_1"], port=cluster.port)
    us_url = pg_url("us_east_1", port=cluster.port)
    engine = create_engine(us_url)
    await migrate(engine, SHARD_HISTORY, "upgrade", "head")
    await engine.dispose()
    dep = await make_deployment(tmp_path, "postgres", urls={"us-east-1": us_url})
    cluster.stop()
    try:
        async for api in start_api(dep.settings()):
            assert (await api.register("hans", "DE")).status_code == 201
            assert (await api.register("ann", "US")).status_code == 503
            cluster.start()
            assert (await api.register("ann", "US")).status_code == 201
    finally:
        await drop_databases(dep.databases)


async def test_shard_without_schema_is_unavailable_not_an_error(tmp_path: Path) -> None:
    bare = f"sqlite+aiosqlite:///{tmp_path}/bare.sqlite"
    dep = await make_deployment(tmp_path, "sqlite", urls={"us-east-1": bare})
    async for api in start_api(dep.settings()):
        refused = await api.register("ann", "US")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shard_schema_missing"
        assert (await api.register("hans", "DE")).status_code == 201
        shards = {s["name"]: s for s in (await api.request("GET", "/v1/shards")).json()["shards"]}
        assert shards["us-east-1"]["schema_revision"] is None
