"""``domicile.client.AsyncClient`` against a real server: the same methods as ``Client``,
awaited; ``list_records`` an async iterator over every page."""

from __future__ import annotations

import inspect

import pytest

from domicile import client as dc
from tests.client.conftest import Target

pytestmark = pytest.mark.anyio


def test_the_same_methods_as_the_sync_client() -> None:
    def methods(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(fn).parameters)
            for name, fn in vars(cls).items()
            if inspect.isfunction(fn) and not name.startswith("_")
        }

    assert methods(dc.AsyncClient) == methods(dc.Client)
    for name in methods(dc.Client):
        if name != "list_records":
            assert inspect.iscoroutinefunction(getattr(dc.AsyncClient, name)), name
    assert inspect.isasyncgenfunction(dc.AsyncClient.list_records)


async def test_every_operation(target: Target, admin_key: str, subject: str) -> None:
    async with dc.AsyncClient(target.url, api_key=admin_key) as api:
        placed = await api.register(subject, "DE", purpose="signup")
        assert (placed.shard, placed.created) == ("eu-fra-1", True)
        assert (await api.placement(subject)).region == "eu-fra"

        meta = await api.put_record(subject, "notes", "a", {"n": 1})
        with pytest.raises(dc.VersionMismatch):
            await api.put_record(subject, "notes", "a", {"n": 2}, if_match=meta.version + 1)
        await api.put_record(subject, "notes", "a", {"n": 2}, if_match=meta.version)
        for key in "bcde":
            await api.put_record(subject, "notes", key, {"n": key})
        record = await api.get_record(subject, "notes", "a")
        assert (record.version, record.data) == (2, {"n": 2})

        listed = [r.key async for r in api.list_records(subject, "notes", page_size=2)]
        assert listed == ["a", "b", "c", "d", "e"]
        with pytest.raises(dc.SubjectNotFound):
            [r async for r in api.list_records(subject + "-nobody")]

        await api.delete_record(subject, "notes", "e")
        with pytest.raises(dc.RecordNotFound):
            await api.get_record(subject, "notes", "e")
        exported = await api.export(subject)
        assert [r.key for r in exported.records] == ["a", "b", "c", "d"]

        await api.erase(subject)
        with pytest.raises(dc.SubjectNotFound) as gone:
            await api.placement(subject)
        assert gone.value.status == 404
