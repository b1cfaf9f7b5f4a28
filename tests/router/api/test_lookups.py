"""Lookup keys over the API on both backends (contract: "Lookup keys"): set, replace and remove;
one subject per value across every region; variants of a value find the same subject; the
value itself never leaves the home shard (catalog, other shards, audit leaves, logs); erasure
frees it; a move carries it; of concurrent claims through two routers exactly one wins."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.api import Api, start_api
from tests.support.deployment import LOG_LEAVES, Deployment, query_shard
from tests.support.leaks import holders_of
from tests.support.shards import set_policy

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
async def api(deployment: Deployment, redis_url: str) -> AsyncIterator[Api]:
    # RU may also live in Frankfurt, so a subject can be moved between two regions.
    set_policy(deployment.config, "RU", ["ru-msk", "eu-fra"])
    if deployment.backend == "postgres":  # as in production: placements cached in Redis
        with deployment.config.open("a") as config:
            config.write(f'\n[redis]\nurl = "{redis_url}"\n')
    async for client in start_api(deployment.settings()):
        yield client


async def register(api: Api, subject: str, jurisdiction: str, **lookups: str) -> Any:
    body: dict[str, Any] = {"subject_id": subject, "jurisdiction": jurisdiction}
    if lookups:
        body["lookups"] = lookups
    return await api.request("POST", "/v1/subjects", json=body)


async def set_lookup(api: Api, subject: str, kind: str, value: str) -> Any:
    return await api.request("PUT", f"/v1/subjects/{subject}/lookups/{kind}", json={"value": value})


async def find(api: Api, kind: str, value: str, scope: str = "records:read") -> Any:
    return await api.request("POST", f"/v1/lookups/{kind}", scope=scope, json={"value": value})


async def lookup_events(dep: Deployment, shard: str) -> list[dict[str, Any]]:
    rows = await query_shard(dep, shard, LOG_LEAVES)
    events = [json.loads(bytes(leaf)) for (leaf,) in rows]
    return [e for e in events if e["event"].startswith("lookup.")]


async def home(api: Api, subject: str) -> str:
    response = await api.request("GET", f"/v1/subjects/{subject}")
    return str(response.json()["shard"])


async def test_set_replace_and_remove(api: Api, deployment: Deployment) -> None:
    assert (await register(api, "ivan", "RU")).status_code == 201
    done = await set_lookup(api, "ivan", "email", "Ivan@Example.RU")
    assert (done.status_code, done.json()) == (200, {"subject_id": "ivan", "kind": "email"})
    found = await find(api, "email", " ivan@example.ru")
    assert found.status_code == 200, found.text
    assert found.json() == {
        "subject_id": "ivan",
        "jurisdiction": "RU",
        "region": (await api.request("GET", "/v1/subjects/ivan")).json()["region"],
        "country": found.json()["country"],
        "shard": await home(api, "ivan"),
    }
    respelled = await set_lookup(api, "ivan", "email", "ivan@example.ru")  # as written: kept
    assert respelled.status_code == 200
    assert (await set_lookup(api, "ivan", "email", "ivan@example.ru")).status_code == 200

    assert (await set_lookup(api, "ivan", "email", "ivan.petrov@example.ru")).status_code == 200
    assert (await find(api, "email", "ivan@example.ru")).status_code == 404
    assert (await find(api, "email", "Ivan.Petrov@example.ru")).json()["subject_id"] == "ivan"
    # The old value is free again.
    assert (await register(api, "ivan-2", "RU", email="IVAN@example.ru")).status_code == 201

    removed = await api.request("DELETE", "/v1/subjects/ivan/lookups/email")
    assert removed.status_code == 204
    missing = await find(api, "email", "ivan.petrov@example.ru")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "subject_not_found")
    assert (await api.request("DELETE", "/v1/subjects/ivan/lookups/email")).status_code == 204

    logged = await lookup_events(deployment, await home(api, "ivan"))
    ivan = api.runtime.pseudonyms.subject("ivan")
    mine = [(e["event"], e["kind"]) for e in logged if e["subject"] == ivan]
    # Set, respelled, replaced (the same again changes nothing), removed (once).
    assert [event for event, _ in mine] == ["lookup.set"] * 3 + ["lookup.removed"]
    assert {kind for _, kind in mine} == {"email"}
    assert all(len(e["blind"]) == 64 and "value" not in e for e in logged)
    # The blind value is the contract's: HMAC-SHA256(lookup secret, kind || 0x00 || normalised),
    # under a secret of its own, created 0600 in the data dir.
    secret_file = deployment.data_dir / "lookup.key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = bytes.fromhex(secret_file.read_text())
    assert secret != bytes.fromhex((deployment.data_dir / "pseudonym.key").read_text())
    first = next(e for e in logged if e["subject"] == ivan)
    expected = hmac.new(secret, b"email\x00ivan@example.ru", hashlib.sha256).hexdigest()
    assert first["blind"] == expected
    export = await api.request("GET", "/v1/subjects/ivan-2/export", scope="records:read")
    assert export.json()["lookups"] == {"email": "IVAN@example.ru"}


async def test_a_value_is_one_subjects_across_regions(api: Api, deployment: Deployment) -> None:
    assert (await register(api, "ivan", "RU", email="ivan@example.ru")).status_code == 201
    taken = await register(api, "hans", "DE", email="Ivan@Example.RU", username="hans")
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "lookup_taken"
    assert (await api.request("GET", "/v1/subjects/hans")).status_code == 404  # nothing stored
    for shard in ("eu-fra-1", "ru-msk-1"):
        held = await query_shard(deployment, shard, "SELECT count(*) FROM lookups")
        assert held == [(1 if shard == await home(api, "ivan") else 0,)]
    assert (await find(api, "username", "hans")).status_code == 404  # not claimed either
    assert (await register(api, "hans", "DE", username="hans")).status_code == 201
    put = await set_lookup(api, "hans", "email", "ivan@example.ru")
    assert (put.status_code, put.json()["error"]["code"]) == (409, "lookup_taken")


async def test_variants_of_a_value_find_the_same_subject(api: Api) -> None:
    assert (await register(api, "olga", "RU", phone="+7 912 345-67-89")).status_code == 201
    for written in ("8 (912) 345-67-89", "+79123456789", "+7 (912) 3456789"):
        found = await find(api, "phone", written)
        assert found.status_code == 200, (written, found.text)
        assert found.json()["subject_id"] == "olga"
    assert (await register(api, "ann", "US", phone="8 (912) 345-67-89")).status_code == 422
    taken = await register(api, "olga-2", "RU", phone="8 912 345 67 89")
    assert taken.status_code == 409
    assert (await register(api, "tom", "US", username="Tomás")).status_code == 201
    assert (await find(api, "username", "TOMÁS")).json()["subject_id"] == "tom"
    assert (await find(api, "username", "tomás")).json()["subject_id"] == "tom"


async def test_registering_again_sets_the_lookup_keys_given(api: Api) -> None:
    assert (await register(api, "ivan", "RU", email="ivan@example.ru")).status_code == 201
    again = await register(api, "ivan", "RU", email="ivan@example.ru", username="ivan")
    assert again.status_code == 200
    assert (await find(api, "username", "IVAN")).json()["subject_id"] == "ivan"
    moved = await register(api, "ivan", "RU", email="ivan.p@example.ru")
    assert moved.status_code == 200
    assert (await find(api, "email", "ivan@example.ru")).status_code == 404
    export = await api.request("GET", "/v1/subjects/ivan/export", scope="records:read")
    assert export.json()["lookups"] == {"email": "ivan.p@example.ru", "username": "ivan"}


async def test_refusals(api: Api) -> None:
    assert (await register(api, "ivan", "RU")).status_code == 201
    for kind, value, code in [
        ("email", "ivan at example dot ru", "invalid_lookup"),
        ("phone", "12", "invalid_lookup"),
        ("shoe_size", "44", "unknown_lookup_kind"),
    ]:
        refused = await set_lookup(api, "ivan", kind, value)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, code)
        assert value not in refused.text
    assert (
        await find(api, "email", "nobody@example.org", scope="records:write")
    ).status_code == 403
    assert (await set_lookup(api, "nobody", "email", "a@example.org")).status_code == 404
    nowhere = await register(api, "li", "CN", email="li@example.cn")
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (422, "no_permitted_region")
    assert (await register(api, "lee", "US", email="li@example.cn")).status_code == 201  # free
    bad = await register(api, "olga", "RU", email="@")
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_lookup")
    assert (await api.request("GET", "/v1/subjects/olga")).status_code == 404


async def test_erasure_frees_the_value(api: Api) -> None:
    assert (await register(api, "anna", "DE", email="anna@example.de")).status_code == 201
    assert (await api.request("DELETE", "/v1/subjects/anna")).status_code == 204
    assert (await find(api, "email", "anna@example.de")).status_code == 404
    assert (await register(api, "anna-2", "FR", email="anna@example.de")).status_code == 201
    assert (await find(api, "email", "anna@example.de")).json()["subject_id"] == "anna-2"


async def test_a_move_carries_the_lookup_keys(api: Api, deployment: Deployment) -> None:
    assert (await register(api, "boris", "RU", email="boris@example.ru")).status_code == 201
    source = await home(api, "boris")
    target = "eu-fra-1" if source == "ru-msk-1" else "ru-msk-1"
    moved = await api.request("POST", "/v1/moves", json={"subject_id": "boris", "to": target})
    assert moved.json()["state"] == "done", moved.text
    found = await find(api, "email", "Boris@example.ru")
    assert found.json()["shard"] == target
    assert await query_shard(deployment, source, "SELECT count(*) FROM lookups") == [(0,)]
    export = await api.request("GET", "/v1/subjects/boris/export", scope="records:read")
    assert export.json()["lookups"] == {"email": "boris@example.ru"}
    assert (await set_lookup(api, "boris", "email", "b@example.ru")).status_code == 200
    assert (await find(api, "email", "b@example.ru")).json()["shard"] == target


async def test_the_value_stays_on_the_home_shard(
    api: Api, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="domicile")
    caplog.set_level(logging.INFO, logger="domicile.access")  # which the CLI quietens
    value = "Zephyrine.Quux@Example.RU"
    assert (await register(api, "zeph", "RU", email=value, username="Zephyrine")).status_code == 201
    assert (await find(api, "email", value)).status_code == 200
    assert (await set_lookup(api, "zeph", "phone", "+7 912 000-11-22")).status_code == 200
    home_shard = await home(api, "zeph")
    secrets = [value, value.casefold(), "Zephyrine", "zephyrine", "+79120001122"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("domicile"))
    assert "/v1/lookups/{kind}" in logged
    for secret in secrets:
        assert secret not in logged
        found = await holders_of(deployment, secret.encode())
        # Only the home shard's lookups table: not its audit log, the catalog or other shards.
        assert found == {(home_shard, "lookups")}, secret
    if deployment.backend == "sqlite":  # the files too, free pages and journals included
        for path in deployment.data_dir.rglob("*"):
            if path.is_file() and not path.name.startswith(home_shard):
                assert value.encode() not in path.read_bytes(), path


async def test_concurrent_claims_through_two_routers(deployment: Deployment) -> None:
    subjects = [f"s{i}" for i in range(12)]
    async for one in start_api(deployment.settings()):
        async for two in start_api(deployment.settings()):
            for subject in subjects:
                assert (await register(one, subject, "US")).status_code == 201

            async def claim(router: Api, subject: str) -> int:
                return int((await set_lookup(router, subject, "username", "the-one")).status_code)

            routers = (one, two)
            answers = await asyncio.gather(
                *(claim(routers[n % 2], s) for n, s in enumerate(subjects))
            )
            assert sorted(answers) == [200] + [409] * (len(subjects) - 1)
            winner = subjects[answers.index(200)]
            for router in (one, two):
                assert (await find(router, "username", "THE-ONE")).json()["subject_id"] == winner
            held = await query_shard(deployment, "us-east-1", "SELECT count(*) FROM lookups")
            assert held == [(1,)]
