"""Answers under concurrency and at the edges of input: one creation is one 201, a precondition
on a missing record fails with 412, a name with a trailing newline is refused."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.api import Api
from tests.support.deployment import Deployment, query_shard

pytestmark = pytest.mark.anyio


async def test_concurrent_identical_registrations_create_once(
    api: Api, deployment: Deployment
) -> None:
    answers = await asyncio.gather(*(api.register("olga", "RU") for _ in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 9 + [201]
    assert {a.json()["shard"] for a in answers} == {"ru-msk-1"}
    registered = await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM subjects")
    assert registered == [(1,)]


async def test_conditional_delete_of_a_missing_record_fails_its_precondition(api: Api) -> None:
    await api.register("hans", "DE")
    url = "/v1/subjects/hans/records/profile/main"
    missing = await api.request("DELETE", url, headers={"If-Match": '"1"'})
    assert missing.status_code == 412
    assert missing.json()["error"]["code"] == "version_mismatch"
    assert "does not exist" in missing.json()["error"]["message"]
    assert (await api.request("DELETE", url)).status_code == 404  # unconditional: not found


@pytest.mark.parametrize("field", ["subject_id", "collection", "key"])
async def test_a_trailing_newline_is_refused(api: Api, field: str) -> None:
    names = {"subject_id": "abc", "collection": "notes", "key": "k"}
    if field == "subject_id":
        answer = await api.request(
            "POST", "/v1/subjects", json={"subject_id": "abc\n", "jurisdiction": "DE"}
        )
    else:
        await api.register("abc", "DE")
        names[field] += "%0A"  # a URL carries the newline percent-encoded
        answer = await api.put("abc", names["collection"], names["key"], {"n": 1})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"].startswith("invalid_")
