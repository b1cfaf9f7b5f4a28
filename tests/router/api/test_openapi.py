"""The OpenAPI document says what the API does: each operation's scope is the one it enforces,
the headers it declares are the ones it reads, and every error answer is the contract's body
with its meaning (schemathesis runs over the same document in tests/router/test_fuzz.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domicile.shards.api_keys import SCOPES
from tests.support.api import Api

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PATH_VALUES = {
    "subject_id": "s1",
    "collection": "c",
    "key": "k",
    "log": "ru-msk-1",
    "move_id": "m",
    "kind": "email",
}
BODIES: dict[str, Any] = {
    "register_subject": {"subject_id": "s1", "jurisdiction": "RU"},
    "move_subject": {"subject_id": "s1", "to_shard": "eu-fra-1"},
    "put_record": {"name": "Ivan"},
    "set_lookup": {"value": "ivan@example.ru"},
    "find_by_lookup": {"value": "ivan@example.ru"},
}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


async def call(
    api: Api, method: str, path: str, op: dict[str, Any], headers: dict[str, str]
) -> tuple[int, str | None]:
    """The operation, with valid parameters and body; its status and error code."""
    url = path.format(**PATH_VALUES)
    params = {
        p["name"]: "1" for p in op.get("parameters", []) if p["in"] == "query" and p["required"]
    }
    body = BODIES[op["operationId"]] if "requestBody" in op else None
    response = await api.client.request(method, url, params=params, json=body, headers=headers)
    is_error = response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    )
    return response.status_code, response.json()["error"]["code"] if is_error else None


def declares(op: dict[str, Any], header: str) -> bool:
    return any(p["in"] == "header" and p["name"] == header for p in op.get("parameters", []))


async def test_each_operation_needs_the_scope_it_documents(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    public = []
    for method, path, op in operations(doc):
        if "security" not in op:
            public.append(op["operationId"])
            assert (await call(api, method, path, op, {}))[0] != 401
            continue
        [[scope]] = [requirement["bearerAuth"] for requirement in op["security"]]
        assert scope in SCOPES
        assert await call(api, method, path, op, {}) == (401, "unauthorized"), path
        other = next(s for s in sorted(SCOPES) if s not in (scope, "admin"))
        assert await call(api, method, path, op, api.auth(other)) == (403, "forbidden"), path
        assert (await call(api, method, path, op, api.auth(scope)))[0] not in (401, 403), path
        assert f"`{scope}`" in op["description"]
    assert sorted(public) == ["get_audit_verifier_key", "healthz", "metrics", "readyz"]


@pytest.mark.parametrize(
    ("header", "bad", "code"),
    [
        ("X-Domicile-Purpose", "x" * 300, "invalid_purpose"),
        ("If-Match", "nope", "invalid_if_match"),
    ],
)
async def test_the_headers_declared_are_the_headers_read(
    api: Api, header: str, bad: str, code: str
) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    declared = []
    for method, path, op in operations(doc):
        status, answered = await call(api, method, path, op, {**api.auth(), header: bad})
        assert (answered == code) == declares(op, header), (path, method, status, answered)
        if answered == code:
            declared.append(op["operationId"])
    if header == "If-Match":
        assert sorted(declared) == ["delete_record", "put_record"]
    else:
        assert sorted(declared) == [
            "delete_record",
            "erase_subject",
            "move_subject",
            "put_record",
            "register_subject",
            "remove_lookup",
            "set_lookup",
        ]


async def test_error_answers_are_described(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(doc)
    for _, path, op in operations(doc):
        assert declares(op, "X-Request-Id"), path
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
            assert "`" in response["description"], (path, status)  # names its codes
            if status == "503":
                assert "Retry-After" in response["headers"]
    record = doc["paths"]["/v1/subjects/{subject_id}/records/{collection}/{key}"]
    assert {"ETag", "X-Domicile-Region", "X-Domicile-Shard"} <= set(
        record["get"]["responses"]["200"]["headers"]
    )
