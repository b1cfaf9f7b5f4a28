"""Reads stay linearizable with acknowledged writes across routers during and after a move:
once the directory names the target, the source serves no read, so a router whose cache still
names the source re-resolves instead of answering older data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domicile.audit.events import Actor
from domicile.shards.moves import Mover
from tests.support.api import Api, start_api
from tests.support.deployment import Deployment, query_shard

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]


def mover_of(api: Api) -> Mover:
    rt = api.runtime
    return Mover(
        rt.settings.topology,
        rt.registry,
        rt.directory,
        rt.move_journal,
        rt.pseudonyms,
        actor=Actor(key_id="test"),
    )


@pytest.fixture
async def two_routers(deployment: Deployment) -> AsyncIterator[tuple[Api, Api]]:
    """Two routers without Redis: each has its own cache, which nothing invalidates."""
    text = deployment.config.read_text()
    deployment.config.write_text(
        text.replace(
            '[policy.RU]\nstore_in = ["ru-msk"]', '[policy.RU]\nstore_in = ["eu-fra", "ru-msk"]'
        )
    )
    async for a in start_api(deployment.settings()):
        async for b in start_api(deployment.settings()):
            yield a, b


async def _placed_on_eu_fra(api: Api) -> str:
    for n in range(200):  # rendezvous places some RU subjects on each permitted shard
        subject = f"ivan-{n}"
        if (await api.register(subject, "RU")).json()["shard"] == "eu-fra-1":
            return subject
    raise AssertionError("no subject placed on eu-fra-1")


@pytest.mark.parametrize("purged", [False, True], ids=["before-purge", "after-purge"])
async def test_a_stale_router_never_reads_older_than_an_acknowledged_write(
    two_routers: tuple[Api, Api],
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    purged: bool,
) -> None:
    a, b = two_routers
    subject = await _placed_on_eu_fra(a)
    url = f"/v1/subjects/{subject}/records/profile/main"
    assert (await a.put(subject, "profile", "main", {"n": 1})).status_code == 200
    assert (await b.request("GET", url)).json()["data"] == {"n": 1}  # B caches eu-fra-1

    mover = mover_of(a)
    if not purged:  # the run stops right after the switch, as a killed `comply` would
        monkeypatch.setattr(Mover, "_purge", lambda *args: _nothing())
    await mover.move_subject(subject, "ru-msk-1")
    written = await a.put(subject, "profile", "main", {"n": 2})
    assert (written.status_code, written.json()["shard"]) == (200, "ru-msk-1")

    for _ in range(5):
        read = await b.request("GET", url)
        assert read.status_code == 200, read.text
        assert (read.json()["data"], read.headers["X-Domicile-Shard"]) == ({"n": 2}, "ru-msk-1")
    exported = await b.request("GET", f"/v1/subjects/{subject}/export")
    assert exported.status_code == 200
    held = await query_shard(deployment, "eu-fra-1", "SELECT state FROM subjects")
    assert held == [("gone",) if purged else ("switched_out",)]


async def _nothing() -> None:
    return None
