"""On PostgreSQL a put is one statement that splices the new version into its audit leaf: the
leaf must be exactly the canonical (RFC 8785) encoding of its event, as on SQLite."""

from __future__ import annotations

import json

import pytest
import rfc8785

from tests.support.api import Api
from tests.support.deployment import Deployment, query_shard

pytestmark = pytest.mark.anyio


async def test_put_appends_a_canonical_leaf_with_the_new_version(
    api: Api, deployment: Deployment
) -> None:
    await api.register("ivan", "RU")
    for version in (1, 2, 3):
        response = await api.put("ivan", "profile", "main", {"v": version, "name": "Иван"})
        assert response.json()["version"] == version
        await api.runtime.audit.log("ru-msk-1").integrate()
        rows = await query_shard(
            deployment, "ru-msk-1", "SELECT leaf FROM audit_entries ORDER BY idx DESC LIMIT 1"
        )
        leaf = bytes(rows[0][0])
        event = json.loads(leaf)
        assert (event["event"], event["version"]) == ("record.put", version)
        assert event["content_sha256"] == response.json()["content_sha256"]
        assert rfc8785.dumps(event) == leaf
