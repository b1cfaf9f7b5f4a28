"""On PostgreSQL a put is one statement that splices the new version into its audit leaf: the
leaf must be exactly the canonical (RFC 8785) encoding of its event, as on SQLite; and the
single statements and the SQLAlchemy paths, run on the same PostgreSQL databases, agree."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime

import pytest
import rfc8785

from domicile.audit.events import RECORD_PUT, Actor, make_leaf
from domicile.router.runtime import open_runtime
from domicile.shards.auditlog import site_of
from domicile.shards.engines import statement_pool
from domicile.shards.errors import RecordNotFound, SubjectMoving, SubjectNotFound
from domicile.shards.store import encode_data
from tests.support.api import Api
from tests.support.deployment import Deployment, query_shard
from tests.support.engines import without_statement_pools

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]

ACTOR = Actor(key_id="test")


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


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_the_statements_and_their_general_twins_agree(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runtimes on one deployment, one without statement pools: writes alternate between
    them, each reads what the other wrote, both refuse alike, and every leaf is make_leaf's."""
    settings = deployment.settings()
    async with AsyncExitStack() as stack:
        with monkeypatch.context() as patch:
            without_statement_pools(patch)
            general = await stack.enter_async_context(open_runtime(settings))
        fast = await stack.enter_async_context(open_runtime(settings))
        for rt, pooled in ((fast, True), (general, False)):
            engines = [rt.catalog.engine, *(shard.engine for shard in rt.registry.all())]
            assert [statement_pool(e) is not None for e in engines] == [pooled] * len(engines)

        await general.store.register("ivan", "RU", ACTOR)
        pseudonym = fast.pseudonyms.subject("ivan")
        placements = [await rt.directory.resolve(pseudonym, fresh=True) for rt in (fast, general)]
        assert placements[0] == placements[1] is not None

        puts = []
        for n, writer in enumerate((fast, general, fast, general)):
            data = {"n": n, "name": "Иван"}
            put = await writer.store.put("ivan", "notes", "k", data, ACTOR)
            assert put.version == n + 1
            puts.append(put)
            for reader in (fast, general):
                got = await reader.store.get("ivan", "notes", "k")
                assert got == replace(put, data=encode_data(data))
        for rt in (fast, general):
            with pytest.raises(RecordNotFound):
                await rt.store.get("ivan", "notes", "missing")

        # The shard's fence as a move leaves it, before and after its switch (which the catalog
        # has not seen: reads are still served there), and as an interrupted erasure does.
        last = replace(puts[-1], data=encode_data(data))
        for state in ("moving_out", "switched_out", "gone"):
            await query_shard(deployment, "ru-msk-1", f"UPDATE subjects SET state = '{state}'")
            for rt in (fast, general):
                with pytest.raises(SubjectNotFound if state == "gone" else SubjectMoving):
                    await rt.store.put("ivan", "notes", "k", {}, ACTOR)
                if state == "gone":
                    with pytest.raises(SubjectNotFound):
                        await rt.store.get("ivan", "notes", "k")
                else:
                    assert await rt.store.get("ivan", "notes", "k") == last
        await query_shard(deployment, "ru-msk-1", "UPDATE subjects SET state = 'home'")

        log = fast.audit.log("ru-msk-1")
        # The policy declared at start, the registration, then the puts.
        assert await log.integrate() == 2 + len(puts)
        shard = fast.registry["ru-msk-1"]
        record = fast.pseudonyms.record("ivan", "notes", "k")
        for entry, put in zip(await log.entries(2, 2 + len(puts)), puts, strict=True):
            assert entry.leaf == make_leaf(
                site_of(shard),
                RECORD_PUT,
                ACTOR,
                subject=pseudonym,
                jurisdiction="RU",
                time=datetime.fromisoformat(json.loads(entry.leaf)["time"]),
                record=record,
                content_sha256=put.content_sha256,
                version=put.version,
            )
