"""Failed authentications: counted (metric), logged with the address and key id but never the
secret, and throttled per client address (429 + Retry-After) until the minute is over; shared by
routers through Redis."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from domicile.router.app import create_app
from domicile.router.errors import ConfigError
from domicile.router.runtime import Runtime
from domicile.router.throttle import WINDOW, AuthThrottle, RedisFailures
from tests.support.deployment import Deployment, make_deployment

pytestmark = pytest.mark.anyio

LIMIT = 3


def some_address() -> str:
    """A client address of this test's own: routers sharing a Redis count by address."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000 * WINDOW + 10.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in-process", "redis"])
async def shared(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[RedisFailures | None]:
    if request.param == "in-process":
        yield None
        return
    failures = RedisFailures(redis_url, f"throttle-test-{random.getrandbits(32):x}")
    yield failures
    await failures.aclose()


async def test_throttle_and_its_reset(shared: RedisFailures | None) -> None:
    clock = Clock()
    throttle = AuthThrottle(LIMIT, shared, clock)
    address = some_address()
    for _ in range(LIMIT):
        assert await throttle.retry_after(address) is None
        await throttle.failed(address)
    assert await throttle.retry_after(address) == WINDOW - 10
    assert await throttle.retry_after(some_address()) is None  # per address
    clock.now += WINDOW - 10 - 0.5
    assert await throttle.retry_after(address) == 1
    clock.now += 0.5  # the next minute
    assert await throttle.retry_after(address) is None


@asynccontextmanager
async def router(dep: Deployment) -> AsyncIterator[tuple[FastAPI, Runtime, str]]:
    """The app in-process, a client coming from one address, and an admin key."""
    app = create_app(dep.settings())
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        admin = (await runtime.api_keys.create("throttle-test", {"admin"})).secret
        yield app, runtime, admin


def client(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://domicile")


async def shards(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.get("/v1/shards", headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
async def throttled(tmp_path: Path) -> Deployment:
    return await make_deployment(tmp_path, "sqlite", f"[api]\nauth_failures_per_minute = {LIMIT}")


async def test_failures_are_counted_logged_and_throttled(
    throttled: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    attacker, other = some_address(), some_address()
    async with router(throttled) as (app, _, admin):
        key_id = admin.split("_")[1]
        guess = f"dmk_{key_id}_not-the-secret"
        async with client(app, attacker) as http:
            with caplog.at_level(logging.WARNING, logger="domicile.auth"):
                assert (await shards(http, guess)).status_code == 401
                assert (await http.get("/v1/shards")).status_code == 401  # no key at all
                assert (await shards(http, "garbage\nforged log line")).status_code == 401
            refused = await shards(http, guess)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
            assert refused.json()["error"]["code"] == "too_many_failed_authentications"
            # Throttled whatever the key, unless it was verified already.
            assert (await shards(http, admin)).status_code == 429
            metrics = (await http.get("/metrics")).text
        async with client(app, other) as http:
            assert (await shards(http, admin)).status_code == 200
        async with client(app, attacker) as http:
            assert (await shards(http, admin)).status_code == 200  # now verified: served

    lines = [r.getMessage() for r in caplog.records if r.name == "domicile.auth"]
    assert lines == [
        f"authentication failed from {attacker}: wrong_secret (key id {key_id})",
        f"authentication failed from {attacker}: missing",
        f"authentication failed from {attacker}: malformed",
    ]
    assert "not-the-secret" not in caplog.text
    assert 'domicile_auth_failures_total{reason="wrong_secret"} 1.0' in metrics
    assert 'domicile_auth_failures_total{reason="throttled"} 2.0' in metrics


async def test_routers_share_the_count_through_redis(tmp_path: Path, redis_url: str) -> None:
    extra = f'[api]\nauth_failures_per_minute = {LIMIT}\n[redis]\nurl = "{redis_url}"'
    dep = await make_deployment(tmp_path, "sqlite", extra)
    address = some_address()
    async with AsyncExitStack() as stack:
        first, _, admin = await stack.enter_async_context(router(dep))
        second, _, _ = await stack.enter_async_context(router(dep))
        one = await stack.enter_async_context(client(first, address))
        two = await stack.enter_async_context(client(second, address))
        guess = f"dmk_{admin.split('_')[1]}_wrong"
        assert (await shards(one, guess)).status_code == 401
        assert (await shards(two, guess)).status_code == 401
        assert (await shards(one, guess)).status_code == 401
        assert (await shards(two, admin)).status_code == 429
        assert (await shards(one, admin)).status_code == 429


@pytest.mark.parametrize("value", ["0", '"5"', "2.5"])
async def test_the_limit_is_validated(tmp_path: Path, value: str) -> None:
    dep = await make_deployment(tmp_path, "sqlite", f"[api]\nauth_failures_per_minute = {value}")
    with pytest.raises(ConfigError, match=r"^api\.auth_failures_per_minute: "):
        dep.settings()


async def test_the_address_may_try_again_the_next_minute(throttled: Deployment) -> None:
    clock = Clock()
    async with router(throttled) as (app, _, admin):
        app.state.authenticator.throttle = AuthThrottle(LIMIT, None, clock)
        async with client(app, some_address()) as http:
            for _ in range(LIMIT):
                assert (await shards(http, "dmk_0123_guess")).status_code == 401
            refused = await shards(http, admin)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == str(WINDOW - 10)
            clock.now += WINDOW - 10
            assert (await shards(http, admin)).status_code == 200
