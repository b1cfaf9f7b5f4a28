"""Directory caching: two routers sharing Redis stay in step; a stale entry never misroutes;
Redis going away costs nothing but cache hits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from domicile.shards.cache import LocalCache, RedisCache
from domicile.shards.placements import Placement
from tests.support.api import Api, start_api
from tests.support.deployment import Deployment, make_deployment, query_shard

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own, so the test may kill it."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


@pytest.fixture
async def two_routers(
    tmp_path: Path, backend: str, redis_url: str
) -> AsyncIterator[tuple[Api, Api, Deployment]]:
    namespace = tmp_path.name.replace("_", "-").lower()[-40:]
    dep = await make_deployment(tmp_path, backend, extra=f'[redis]\nurl = "{redis_url}"\n')
    dep.config.write_text(
        dep.config.read_text().replace('deployment = "test"', f'deployment = "t{namespace}"')
    )
    try:
        async for a in start_api(dep.settings()):
            async for b in start_api(dep.settings()):
                yield a, b, dep
    finally:
        from tests.support.deployment import drop_databases

        if dep.databases:
            await drop_databases(dep.databases)


async def _eventually(check: object, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_invalidation_reaches_every_router(two_routers: tuple[Api, Api, Deployment]) -> None:
    a, b, _ = two_routers
    assert isinstance(b.runtime.cache, RedisCache)
    await a.register("hans", "DE")
    await a.put("hans", "profile", "main", {"v": 1})
    assert (await b.request("GET", "/v1/subjects/hans/records/profile/main")).status_code == 200
    pseudonym = b.runtime.pseudonyms.subject("hans")
    local: LocalCache = b.runtime.cache._local
    assert local.peek(pseudonym) is not None

    assert (await a.request("DELETE", "/v1/subjects/hans")).status_code == 204
    assert await _eventually(lambda: local.peek(pseudonym) is None)
    assert (await b.request("GET", "/v1/subjects/hans")).status_code == 404


async def test_stale_entry_is_refused_by_the_shard_and_re_resolved(
    two_routers: tuple[Api, Api, Deployment],
) -> None:
    a, b, dep = two_routers
    await a.register("hans", "DE")
    pseudonym = a.runtime.pseudonyms.subject("hans")
    real = await a.runtime.directory.read(pseudonym)
    assert real is not None
    # A router holding a wrong placement (as after a missed invalidation) still writes to the
    # subject's true home: the wrong shard's fence refuses, the router re-resolves.
    b.runtime.cache._local.store(replace(real, shard="us-east-1"))
    written = await b.put("hans", "profile", "main", {"v": 2})
    assert written.status_code == 200
    assert written.json()["shard"] == "eu-fra-1"
    assert await query_shard(dep, "us-east-1", "SELECT count(*) FROM records") == [(0,)]


async def test_redis_outage_falls_back_to_the_catalog(
    tmp_path: Path,
    private_redis: tuple[str, subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proc = private_redis
    dep = await make_deployment(tmp_path, "sqlite", extra=f'[redis]\nurl = "{url}"\n')
    async for api in start_api(dep.settings()):
        await api.register("ann", "US")
        await api.put("ann", "profile", "main", {"v": 1})
        proc.kill()
        proc.wait()
        with caplog.at_level(logging.WARNING, logger="domicile.cache"):
            for i in range(5):
                response = await api.put("ann", "profile", "main", {"v": i})
                assert response.status_code == 200
                assert (await api.request("GET", "/v1/subjects/ann")).status_code == 200
            assert (await api.register("joao", "BR")).status_code == 201
        warnings = [r for r in caplog.records if "redis cannot be reached" in r.getMessage()]
        assert len(warnings) == 1  # logged once, not per request


async def test_local_cache_is_bounded_and_expires() -> None:
    cache = LocalCache(capacity=2, ttl=0.05)
    for name in ("a", "b", "c"):
        cache.store(Placement(name, "DE", "eu-fra-1", 1, "active"))
    assert cache.peek("a") is None
    assert cache.peek("c") is not None
    await asyncio.sleep(0.06)
    assert cache.peek("c") is None
