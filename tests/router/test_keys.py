"""API keys as an admin manages them: listed without secrets, revoked everywhere at once with
Redis (a second router refuses the key on its next request) and within the key cache's time
without, their last use recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domicile.router.auth import Authenticator
from tests.support.api import Api, start_api
from tests.support.cli import cli
from tests.support.deployment import Deployment, drop_databases, make_deployment

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two_routers(
    tmp_path: Path, backend: str, redis_url: str
) -> AsyncIterator[tuple[Api, Api, Deployment]]:
    """Two routers of one deployment sharing Redis (its own namespace: the deployment name)."""
    name = "k" + tmp_path.name.replace("_", "-").lower()[-40:]
    dep = await make_deployment(tmp_path, backend, extra=f'[redis]\nurl = "{redis_url}"\n')
    dep.config.write_text(dep.config.read_text().replace('"test"', f'"{name}"', 1))
    try:
        async for a in start_api(dep.settings()):
            async for b in start_api(dep.settings()):
                yield a, b, dep
    finally:
        if dep.databases:
            await drop_databases(dep.databases)


async def test_a_revoked_key_is_refused_by_every_router_at_once(
    two_routers: tuple[Api, Api, Deployment], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, dep = two_routers
    made = await a.request("POST", "/v1/keys", json={"name": "billing", "scopes": ["audit:read"]})
    assert made.status_code == 201, made.text
    key_id, secret = made.json()["key_id"], made.json()["secret"]
    bearer = {"Authorization": f"Bearer {secret}"}
    for router in (a, b):  # each caches the verified key
        assert (await router.client.get("/v1/audit/logs", headers=bearer)).status_code == 200

    caplog.set_level(logging.INFO, logger="domicile.auth")
    revoked = await cli(dep.config, "keys", "revoke", key_id)  # a third process, the CLI
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked API key {key_id} (billing)" in revoked.output

    for router in (a, b):
        refused = await router.client.get("/v1/audit/logs", headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    # Both routers' application logs record it.
    assert caplog.messages.count(f"API key {key_id} revoked: refused from now on") == 2
    # Through the API too, from the other router; again is no error.
    assert (await b.request("DELETE", f"/v1/keys/{key_id}")).status_code == 204
    missing = await b.request("DELETE", "/v1/keys/0000000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "key_not_found"


async def test_keys_are_listed_with_their_last_use_and_never_a_secret(
    api: Api, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    made = await api.request("POST", "/v1/keys", json={"name": "reports", "scopes": ["admin"]})
    new = made.json()
    assert made.status_code == 201
    assert new["scopes"] == ["admin"]
    assert new["last_used_at"] is None
    bearer = {"Authorization": f"Bearer {new['secret']}"}
    assert (await api.client.get("/v1/keys", headers=bearer)).status_code == 200
    listing = await _eventually_used(api, new["key_id"])  # written in the background
    assert all(set(k) == set(new) - {"secret"} for k in listing)
    assert new["secret"] not in str(listing)

    table = await cli(deployment.config, "keys", "list")
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == ["id", "name", "scopes", "created", "last", "used", "revoked"]
    assert any(r.split()[:3] == [new["key_id"], "reports", "admin"] for r in rows)
    assert "dmk_" not in table.output

    bad = await api.request("POST", "/v1/keys", json={"name": "x", "scopes": ["everything"]})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_scope"
    gone = await cli(deployment.config, "keys", "revoke", "nope")
    assert gone.exit_code == 2
    assert gone.output.strip().endswith("there is no API key 'nope'")


async def _eventually_used(api: Api, key_id: str) -> list[dict[str, object]]:
    for _ in range(50):
        listing: list[dict[str, object]] = (await api.request("GET", "/v1/keys")).json()["keys"]
        if any(k["key_id"] == key_id and k["last_used_at"] for k in listing):
            return listing
        await asyncio.sleep(0.05)
    raise AssertionError(f"the last use of {key_id} was not recorded")


async def test_without_redis_another_router_refuses_the_key_within_its_cache_time(
    api: Api, deployment: Deployment
) -> None:
    """No Redis: the revoking router refuses the key at once, another one once its cached
    verification expires (30 s in production, a fraction of a second here)."""
    ttl = 0.5
    async for other in start_api(deployment.settings()):
        for router in (api, other):
            app = router.client._transport.app  # type: ignore[attr-defined]
            app.state.authenticator = Authenticator(router.runtime.api_keys, ttl=ttl)
        made = await api.request("POST", "/v1/keys", json={"name": "b", "scopes": ["audit:read"]})
        bearer = {"Authorization": f"Bearer {made.json()['secret']}"}
        for router in (api, other):
            assert (await router.client.get("/v1/audit/logs", headers=bearer)).status_code == 200
        assert (await api.request("DELETE", f"/v1/keys/{made.json()['key_id']}")).status_code == 204
        assert (await api.client.get("/v1/audit/logs", headers=bearer)).status_code == 401
        assert (await other.client.get("/v1/audit/logs", headers=bearer)).status_code == 200
        await asyncio.sleep(ttl)
        assert (await other.client.get("/v1/audit/logs", headers=bearer)).status_code == 401
