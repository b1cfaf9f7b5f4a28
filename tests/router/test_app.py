"""The HTTP API end to end, on SQLite and on PostgreSQL, with placement proven by querying each
shard's database directly."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.api import Api
from tests.support.deployment import Deployment, query_shard

pytestmark = pytest.mark.anyio


async def rows_on(dep: Deployment, shard: str) -> list[tuple[object, ...]]:
    return await query_shard(
        dep, shard, "SELECT subject_id, jurisdiction FROM subjects ORDER BY subject_id"
    )


@pytest.mark.general_path
async def test_placement_by_jurisdiction(api: Api, deployment: Deployment) -> None:
    cases = {"ivan": "RU", "hans": "DE", "marie": "FR", "joao": "BR", "ann": "US"}
    expected = {
        "RU": "ru-msk-1",
        "DE": "eu-fra-1",
        "FR": "eu-fra-1",
        "BR": "us-east-1",
        "US": "us-east-1",
    }
    for subject, jurisdiction in cases.items():
        response = await api.register(subject, jurisdiction)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["shard"] == expected[jurisdiction]
        assert body["jurisdiction"] == jurisdiction
        put = await api.put(subject, "profile", "main", {"name": subject})
        assert put.status_code == 200, put.text
        assert put.json()["shard"] == expected[jurisdiction]

    # Each shard database holds exactly its jurisdictions' subjects and records.
    assert await rows_on(deployment, "ru-msk-1") == [("ivan", "RU")]
    assert await rows_on(deployment, "eu-fra-1") == [("hans", "DE"), ("marie", "FR")]
    assert await rows_on(deployment, "us-east-1") == [("ann", "US"), ("joao", "BR")]
    for shard, count in (("ru-msk-1", 1), ("eu-fra-1", 2), ("us-east-1", 2)):
        records = await query_shard(deployment, shard, "SELECT jurisdiction FROM records")
        assert len(records) == count


@pytest.mark.general_path
async def test_register_is_idempotent_and_conflicts(api: Api) -> None:
    assert (await api.register("ivan", "RU")).status_code == 201
    again = await api.register("ivan", "RU")
    assert again.status_code == 200
    assert again.json()["shard"] == "ru-msk-1"
    conflict = await api.register("ivan", "DE")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "jurisdiction_conflict"


@pytest.mark.general_path
async def test_unplaceable_jurisdiction_stores_nothing(api: Api, deployment: Deployment) -> None:
    response = await api.register("li", "CN")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_permitted_region"
    for shard in deployment.shard_urls:
        assert await rows_on(deployment, shard) == []
    assert await api.runtime.directory.count_by_shard() == {}
    metrics = (await api.client.get("/metrics")).text
    assert 'domicile_placements_refused_total{jurisdiction="CN"} 1.0' in metrics


@pytest.mark.general_path
async def test_shard_guard_rejects_misplaced_insert(api: Api, deployment: Deployment) -> None:
    """Bypassing the router entirely: the shard itself refuses a row it may not hold."""
    stamp = "2026-01-01T00:00:00+00:00"
    sql = (
        "INSERT INTO subjects (pseudonym, subject_id, jurisdiction, state, placement_version,"
        " created_at, updated_at) VALUES ($1, 'x', $2, 'home', 1, '" + stamp + "', '" + stamp + "')"
    )
    with pytest.raises(Exception, match="residency guard"):
        await query_shard(deployment, "eu-fra-1", sql, "p" * 64, "RU")
    with pytest.raises(Exception, match="residency guard"):
        await query_shard(deployment, "us-east-1", sql, "q" * 64, "CN")
    await query_shard(deployment, "eu-fra-1", sql, "r" * 64, "DE")  # permitted: accepted
    assert await rows_on(deployment, "eu-fra-1") == [("x", "DE")]


@pytest.mark.general_path
async def test_record_roundtrip_headers_and_versions(api: Api) -> None:
    await api.register("hans", "DE")
    first = await api.put("hans", "profile", "main", {"name": "Hans", "tags": [1, 2]})
    assert first.status_code == 200
    body = first.json()
    assert body["version"] == 1
    assert body["region"] == "eu-fra"
    assert body["content_sha256"] == hashlib.sha256(b'{"name":"Hans","tags":[1,2]}').hexdigest()

    got = await api.request("GET", "/v1/subjects/hans/records/profile/main", "records:read")
    assert got.status_code == 200
    assert got.headers["etag"] == '"1"'
    assert got.headers["x-domicile-region"] == "eu-fra"
    assert got.headers["x-domicile-shard"] == "eu-fra-1"
    assert got.json()["data"] == {"name": "Hans", "tags": [1, 2]}

    second = await api.put(
        "hans", "profile", "main", {"name": "Hans B"}, headers={"If-Match": '"1"'}
    )
    assert second.json()["version"] == 2
    stale = await api.put("hans", "profile", "main", {"name": "x"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "version_mismatch"
    missing = await api.put("hans", "profile", "other", {"a": 1}, headers={"If-Match": '"1"'})
    assert missing.status_code == 412
    unconditional = await api.put("hans", "profile", "main", {"name": "Hans C"})
    assert unconditional.json()["version"] == 3

    stale_delete = await api.request(
        "DELETE", "/v1/subjects/hans/records/profile/main", headers={"If-Match": '"2"'}
    )
    assert stale_delete.status_code == 412
    deleted = await api.request("DELETE", "/v1/subjects/hans/records/profile/main")
    assert deleted.status_code == 204
    gone = await api.request("GET", "/v1/subjects/hans/records/profile/main")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "record_not_found"
    again = await api.request("DELETE", "/v1/subjects/hans/records/profile/main")
    assert again.status_code == 404


@pytest.mark.general_path
async def test_pagination_and_export(api: Api) -> None:
    await api.register("ann", "US")
    for i in range(7):
        await api.put("ann", "orders" if i % 2 else "notes", f"k{i:02}", {"i": i})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await api.request("GET", "/v1/subjects/ann/records", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 3
        seen += [f"{r['collection']}/{r['key']}" for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == 7
    only_orders = await api.request(
        "GET", "/v1/subjects/ann/records", params={"collection": "orders"}
    )
    assert [r["key"] for r in only_orders.json()["items"]] == ["k01", "k03", "k05"]

    export = await api.request("GET", "/v1/subjects/ann/export", "records:read")
    assert export.status_code == 200
    body = export.json()
    assert body["subject_id"] == "ann"
    assert body["shard"] == "us-east-1"
    assert sorted(r["data"]["i"] for r in body["records"]) == list(range(7))

    bad = await api.request("GET", "/v1/subjects/ann/records", params={"cursor": "!!"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.general_path
async def test_erasure(api: Api, deployment: Deployment) -> None:
    await api.register("marie", "FR")
    secret = "marie-secret-diary-8c1f0e"
    await api.put("marie", "diary", "d1", {"text": secret})
    await api.register("hans", "DE")
    await api.put("hans", "profile", "main", {"name": "stays"})

    erased = await api.request("DELETE", "/v1/subjects/marie", "subjects:write")
    assert erased.status_code == 204
    assert (await api.request("GET", "/v1/subjects/marie")).status_code == 404
    assert (await api.request("GET", "/v1/subjects/marie/records/diary/d1")).status_code == 404
    assert await rows_on(deployment, "eu-fra-1") == [("hans", "DE")]
    assert await query_shard(deployment, "eu-fra-1", "SELECT data FROM records") == [
        ('{"name":"stays"}',)
    ]
    if deployment.backend == "sqlite":
        # The bytes are gone from every file of the shard, not merely unreachable.
        shard_dir = deployment.data_dir / "shards"
        for path in shard_dir.glob("eu-fra-1.sqlite*"):
            assert secret.encode() not in path.read_bytes(), path.name
            assert b"marie" not in path.read_bytes(), path.name
    # Re-registering after erasure starts afresh.
    assert (await api.register("marie", "FR")).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("POST", "/v1/subjects", "subjects:write"),
        ("DELETE", "/v1/subjects/ivan", "subjects:write"),
        ("GET", "/v1/subjects/ivan", "records:read"),
        ("GET", "/v1/subjects/ivan/export", "records:read"),
        ("PUT", "/v1/subjects/ivan/records/c/k", "records:write"),
        ("GET", "/v1/subjects/ivan/records/c/k", "records:read"),
        ("DELETE", "/v1/subjects/ivan/records/c/k", "records:write"),
        ("GET", "/v1/subjects/ivan/records", "records:read"),
        ("GET", "/v1/shards", "admin"),
    ],
)
async def test_scopes(api: Api, method: str, path: str, needed: str) -> None:
    body = {"subject_id": "ivan", "jurisdiction": "RU"} if method in ("POST", "PUT") else None
    unauth = await api.client.request(method, path, json=body)
    assert unauth.status_code == 401
    assert unauth.json()["error"]["code"] == "unauthorized"
    bogus = await api.client.request(
        method, path, json=body, headers={"Authorization": "Bearer dmk_nope_nope"}
    )
    assert bogus.status_code == 401
    for scope in api.keys:
        response = await api.request(method, path, scope, json=body)
        if scope in (needed, "admin"):
            assert response.status_code not in (401, 403), (scope, response.text)
        else:
            assert response.status_code == 403, (scope, response.text)
            assert needed in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "POST",
            "/v1/subjects",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "malformed_json",
        ),
        ("POST", "/v1/subjects", {"json": [1, 2]}, 422, "invalid_request"),
        ("POST", "/v1/subjects", {"json": {"subject_id": "a"}}, 422, "invalid_request"),
        (
            "POST",
            "/v1/subjects",
            {"json": {"subject_id": "a", "jurisdiction": "XX"}},
            422,
            "invalid_jurisdiction",
        ),
        (
            "POST",
            "/v1/subjects",
            {"json": {"subject_id": "a", "jurisdiction": "ru"}},
            422,
            "invalid_jurisdiction",
        ),
        (
            "POST",
            "/v1/subjects",
            {"json": {"subject_id": "a b", "jurisdiction": "RU"}},
            422,
            "invalid_subject_id",
        ),
        (
            "POST",
            "/v1/subjects",
            {"json": {"subject_id": "x" * 129, "jurisdiction": "RU"}},
            422,
            "invalid_subject_id",
        ),
        (
            "POST",
            "/v1/subjects",
            {
                "content": b"subject_id=a",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
        ),
        (
            "PUT",
            "/v1/subjects/hans/records/c/k",
            {"content": b"{bad", "headers": {"content-type": "application/json"}},
            422,
            "malformed_json",
        ),
        ("PUT", "/v1/subjects/hans/records/c/k", {"json": [1]}, 422, "invalid_body"),
        ("PUT", "/v1/subjects/hans/records/c/k", {"json": "text"}, 422, "invalid_body"),
        (
            "PUT",
            "/v1/subjects/hans/records/c/k",
            {"content": b"null", "headers": {"content-type": "application/json"}},
            422,
            "invalid_body",
        ),
        (
            "PUT",
            "/v1/subjects/hans/records/c/k",
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("PUT", "/v1/subjects/hans/records/c/k", {"content": b"{}"}, 415, "unsupported_media_type"),
        (
            "PUT",
            "/v1/subjects/hans/records/c/k",
            {"json": {"a": "x" * (1024 * 1024)}},
            413,
            "record_too_large",
        ),
        (
            "PUT",
            "/v1/subjects/hans/records/c/k",
            {"json": {}, "headers": {"If-Match": "abc"}},
            422,
            "invalid_if_match",
        ),
        ("PUT", "/v1/subjects/hans/records/c%20c/k", {"json": {}}, 422, "invalid_collection"),
        ("PUT", "/v1/subjects/nobody/records/c/k", {"json": {}}, 404, "subject_not_found"),
        ("GET", "/v1/subjects/hans/records/c/" + "k" * 300, {}, 422, "invalid_key"),
        ("GET", "/v1/subjects/bad%20id", {}, 422, "invalid_subject_id"),
        ("GET", "/v1/subjects/hans/records", {"params": {"limit": 0}}, 422, "invalid_request"),
        ("GET", "/v1/subjects/hans/records", {"params": {"limit": "x"}}, 422, "invalid_request"),
        ("GET", "/v1/nothing-here", {}, 404, "not_found"),
        ("PATCH", "/v1/subjects", {}, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_gets_contract_errors(
    api: Api, method: str, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    await api.register("hans", "DE")
    response = await api.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    # Nothing was stored by a refused request.
    assert (await api.request("GET", "/v1/subjects/hans/records")).json()["items"] == []


async def test_shards_overview_health_and_metrics(api: Api) -> None:
    await api.register("ivan", "RU")
    await api.put("ivan", "profile", "main", {"a": 1})
    shards = (await api.request("GET", "/v1/shards")).json()["shards"]
    by_name = {s["name"]: s for s in shards}
    assert by_name["ru-msk-1"]["health"] == "up"
    assert by_name["ru-msk-1"]["subjects"] == 1
    assert by_name["ru-msk-1"]["records"] == 1
    assert by_name["ru-msk-1"]["schema_revision"] == by_name["ru-msk-1"]["head_revision"]
    assert by_name["eu-fra-1"]["country"] == "DE"

    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    metrics = (await api.client.get("/metrics")).text
    assert 'domicile_shard_up{cause="",region="ru-msk",shard="ru-msk-1"} 1.0' in metrics
    assert 'domicile_catalog_up{cause=""} 1.0' in metrics
    assert (await api.client.get("/readyz")).json()["status"] == "ready"
    assert 'route="/v1/subjects/{subject_id}/records/{collection}/{key}"' in metrics
    assert "domicile_http_request_duration_seconds_bucket" in metrics
    assert "ivan" not in metrics  # route templates, never raw ids


async def test_openapi_is_served(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    put = spec["paths"]["/v1/subjects/{subject_id}/records/{collection}/{key}"]["put"]
    assert put["operationId"] == "put_record"
    assert "application/json" in put["requestBody"]["content"]
    assert "412" in put["responses"]


@pytest.mark.general_path
async def test_purpose_and_request_id_reach_the_audit_entry(
    api: Api, deployment: Deployment
) -> None:
    await api.register("ivan", "RU")
    response = await api.put(
        "ivan",
        "profile",
        "main",
        {"a": 1},
        headers={"X-Domicile-Purpose": "support ticket 42", "X-Request-Id": "req-123"},
    )
    assert response.headers["x-request-id"] == "req-123"
    await api.runtime.audit.log("ru-msk-1").integrate()
    leaves = await query_shard(
        deployment, "ru-msk-1", "SELECT leaf FROM audit_entries ORDER BY idx"
    )
    last = bytes(leaves[-1][0]).decode()
    assert '"purpose":"support ticket 42"' in last
    assert '"request_id":"req-123"' in last
    assert '"event":"record.put"' in last
    assert "ivan" not in last
    assert "profile" not in last


@pytest.mark.general_path
async def test_interrupted_erasure_completes_on_retry(api: Api, deployment: Deployment) -> None:
    await api.register("marie", "FR")
    await api.put("marie", "diary", "d1", {"t": 1})
    # As if a crash hit between the shard's commit and the catalog's: rows gone, entry left.
    await query_shard(deployment, "eu-fra-1", "DELETE FROM records")
    await query_shard(deployment, "eu-fra-1", "DELETE FROM subjects")
    assert (await api.request("GET", "/v1/subjects/marie/records/diary/d1")).status_code == 404
    assert (await api.request("DELETE", "/v1/subjects/marie")).status_code == 204
    assert await api.runtime.directory.read(api.runtime.pseudonyms.subject("marie")) is None
    assert (await api.request("DELETE", "/v1/subjects/marie")).status_code == 404
