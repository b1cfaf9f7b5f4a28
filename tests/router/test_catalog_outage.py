"""The catalog's PostgreSQL server stops for longer than the key cache's time: subjects whose
placement is cached go on being served to keys verified before the outage; what needs the
catalog gets 503 catalog_unavailable; service resumes by itself."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from domicile.router.auth import Authenticator
from domicile.shards.engines import create_engine
from domicile.shards.schema_runner import CATALOG_HISTORY, migrate
from tests.support.api import start_api
from tests.support.deployment import create_databases, make_deployment, pg_url
from tests.support.pgcluster import Cluster

pytestmark = pytest.mark.anyio

KEY_TTL = 0.2


@pytest.mark.postgres
async def test_verified_keys_outlive_a_catalog_outage(tmp_path: Path, cluster: Cluster) -> None:
    await create_databases(["catalog"], port=cluster.port)
    catalog_url = pg_url("catalog", port=cluster.port)
    engine = create_engine(catalog_url)
    await migrate(engine, CATALOG_HISTORY, "upgrade", "head")
    await engine.dispose()
    dep = await make_deployment(tmp_path, "sqlite")
    dep.config.write_text(
        re.sub(
            r'\[catalog\]\nurl = "[^"]*"',
            f'[catalog]\nurl = "{catalog_url}"',
            dep.config.read_text(),
        )
    )
    async for api in start_api(dep.settings()):
        app = api.client._transport.app  # type: ignore[attr-defined]
        app.state.authenticator = Authenticator(api.runtime.api_keys, ttl=KEY_TTL)
        await api.register("ann", "US")
        url = "/v1/subjects/ann/records/profile/main"
        assert (await api.put("ann", "profile", "main", {"v": 1})).status_code == 200

        cluster.stop()
        await asyncio.sleep(KEY_TTL * 3)  # every key's cache time is over
        for _ in range(3):
            served = await api.request("GET", url)
            assert served.status_code == 200, served.text
        never_verified = await api.request("GET", url, scope="records:read")
        assert never_verified.status_code == 503, never_verified.text
        assert never_verified.json()["error"]["code"] == "catalog_unavailable"
        assert never_verified.headers["retry-after"].isdigit()
        unknown = await api.request("GET", "/v1/subjects/nobody/records/profile/main")
        assert unknown.status_code == 503

        cluster.start()
        for _ in range(50):
            back = await api.request("GET", url, scope="records:read")
            if back.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert back.status_code == 200, back.text
