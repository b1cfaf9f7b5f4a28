"""/v1/audit end to end: everything an auditor fetches verifies with the published key alone."""

from __future__ import annotations

import asyncio
import base64

import pytest

from domicile.audit.checkpoint import open_checkpoint
from domicile.audit.events import decode_leaf
from domicile.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from tests.support.api import Api, verifier_of, write_some

pytestmark = pytest.mark.anyio

PEOPLE = {"ivan": "RU", "olga": "RU", "hans": "DE", "ann": "US"}


async def test_checkpoint_entries_and_proofs_verify(api: Api) -> None:
    await write_some(api, PEOPLE)
    verifier = await verifier_of(api)
    assert verifier.name == "domicile/test"

    first = await api.request("GET", "/v1/audit/logs/ru-msk-1/checkpoint", scope="audit:read")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain")
    # Committed before the request, so covered: the start-up's policy.changed entry, 2
    # registrations and 4 puts.
    small = open_checkpoint(first.text, [verifier], "domicile/test/ru-msk-1")
    assert small.size == 7

    await write_some(api, {"pyotr": "RU"}, records=3)
    second = await api.request("GET", "/v1/audit/logs/ru-msk-1/checkpoint", scope="audit:read")
    big = open_checkpoint(second.text, [verifier], "domicile/test/ru-msk-1")
    assert big.size == 11

    entries = await api.request(
        "GET", "/v1/audit/logs/ru-msk-1/entries?start=0&end=100", scope="audit:read"
    )
    body = entries.json()
    assert [e["index"] for e in body] == list(range(11))
    for entry in body:
        leaf = base64.b64decode(entry["leaf"])
        assert decode_leaf(leaf) == entry["event"]
        assert entry["event"]["log"] == "ru-msk-1"
        assert "ivan" not in leaf.decode()
        assert "olga" not in leaf.decode()
        proof = await api.request(
            "GET",
            f"/v1/audit/logs/ru-msk-1/proof/inclusion?index={entry['index']}&tree_size=11",
            scope="audit:read",
        )
        hashes = [base64.b64decode(h) for h in proof.json()["hashes"]]
        verify_inclusion(leaf_hash(leaf), entry["index"], 11, hashes, big.root_hash)

    consistency = await api.request(
        "GET", "/v1/audit/logs/ru-msk-1/proof/consistency?first=7&second=11", scope="audit:read"
    )
    assert consistency.json()["first"] == 7
    hashes = [base64.b64decode(h) for h in consistency.json()["hashes"]]
    verify_consistency(7, 11, hashes, small.root_hash, big.root_hash)


async def test_logs_listing(api: Api) -> None:
    await write_some(api, {"ivan": "RU"})
    await api.request("GET", "/v1/audit/logs/ru-msk-1/checkpoint", scope="audit:read")
    response = await api.request("GET", "/v1/audit/logs", scope="audit:read")
    assert response.status_code == 200
    logs = {entry["log"]: entry for entry in response.json()["logs"]}
    assert set(logs) == {"ru-msk-1", "eu-fra-1", "us-east-1"}
    ru = logs["ru-msk-1"]
    assert (ru["shard"], ru["region"], ru["country"], ru["status"]) == (
        "ru-msk-1",
        "ru-msk",
        "RU",
        "ok",
    )
    assert ru["size"] == 4  # policy.changed, a registration and 2 puts
    assert ru["checkpoint"]["size"] == 4
    assert ru["checkpoint"]["note"].startswith("domicile/test/ru-msk-1\n4\n")


async def test_server_integrates_and_publishes_in_the_background(api: Api) -> None:
    await write_some(api, {"ivan": "RU"})
    for _ in range(100):
        listing = await api.request("GET", "/v1/audit/logs", scope="audit:read")
        ru = next(log for log in listing.json()["logs"] if log["log"] == "ru-msk-1")
        if ru["checkpoint"] and ru["checkpoint"]["size"] == 4:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no checkpoint of size 4 was published: {ru}")


async def test_subject_history_has_proofs(api: Api) -> None:
    await write_some(api, {"ivan": "RU", "hans": "DE"})
    await api.request("DELETE", "/v1/subjects/ivan/records/notes/n0")
    response = await api.request("GET", "/v1/audit/subjects/ivan", scope="audit:read")
    assert response.status_code == 200, response.text
    body = response.json()
    verifier = await verifier_of(api)
    events = [e["event"]["event"] for e in body["entries"]]
    assert events == ["subject.registered", "record.put", "record.put", "record.deleted"]
    for entry in body["entries"]:
        assert entry["event"]["subject"] == body["subject"]
        checkpoint = open_checkpoint(
            body["checkpoints"][entry["log"]], [verifier], f"domicile/test/{entry['log']}"
        )
        proof = entry["inclusion_proof"]
        assert proof["tree_size"] == checkpoint.size
        verify_inclusion(
            leaf_hash(base64.b64decode(entry["leaf"])),
            entry["index"],
            checkpoint.size,
            [base64.b64decode(h) for h in proof["hashes"]],
            checkpoint.root_hash,
        )
    assert "ivan" not in response.text.replace("/v1/audit/subjects/ivan", "")

    unknown = await api.request("GET", "/v1/audit/subjects/nobody", scope="audit:read")
    assert unknown.status_code == 404
    invalid = await api.request("GET", "/v1/audit/subjects/bad%20id", scope="audit:read")
    assert invalid.status_code == 422


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/audit/logs/nope/checkpoint", 404, "log_not_found"),
        ("/v1/audit/logs/nope/entries", 404, "log_not_found"),
        ("/v1/audit/logs/ru-msk-1/proof/inclusion?index=3&tree_size=3", 422, "out_of_range"),
        ("/v1/audit/logs/ru-msk-1/proof/inclusion?index=0&tree_size=99", 422, "out_of_range"),
        ("/v1/audit/logs/ru-msk-1/proof/inclusion?index=-1&tree_size=3", 422, "invalid_request"),
        ("/v1/audit/logs/ru-msk-1/proof/inclusion?index=x", 422, "invalid_request"),
        ("/v1/audit/logs/ru-msk-1/proof/inclusion", 422, "invalid_request"),
        ("/v1/audit/logs/ru-msk-1/proof/consistency?first=0&second=3", 422, "invalid_request"),
        ("/v1/audit/logs/ru-msk-1/proof/consistency?first=3&second=2", 422, "out_of_range"),
        ("/v1/audit/logs/ru-msk-1/proof/consistency?first=1&second=99", 422, "out_of_range"),
        ("/v1/audit/logs/ru-msk-1/entries?start=3&end=1", 422, "out_of_range"),
        ("/v1/audit/report?jurisdiction=XX", 422, "invalid_jurisdiction"),
        ("/v1/audit/report?format=pdf", 422, "invalid_request"),
    ],
)
async def test_bad_requests(api: Api, path: str, status: int, code: str) -> None:
    await write_some(api, {"ivan": "RU"})
    response = await api.request("GET", path, scope="audit:read")
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_scopes_and_public_key(api: Api) -> None:
    assert (await api.client.get("/v1/audit/logs")).status_code == 401
    denied = await api.request("GET", "/v1/audit/logs", scope="records:read")
    assert denied.status_code == 403
    key = await api.client.get("/v1/audit/key")
    assert key.status_code == 200
    assert key.headers["content-type"].startswith("text/plain")
    assert key.text.startswith("domicile/test+")


async def test_entries_page_and_empty_tail(api: Api) -> None:
    await write_some(api, {"ivan": "RU"})
    await api.request("GET", "/v1/audit/logs/ru-msk-1/checkpoint", scope="audit:read")
    tail = await api.request("GET", "/v1/audit/logs/ru-msk-1/entries?start=4", scope="audit:read")
    assert tail.json() == []
    two = await api.request(
        "GET", "/v1/audit/logs/ru-msk-1/entries?start=2&end=4", scope="audit:read"
    )
    assert [e["index"] for e in two.json()] == [2, 3]


async def test_openapi_documents_the_audit_api(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operations = {
        op["operationId"]
        for path, methods in spec["paths"].items()
        if path.startswith("/v1/audit")
        for op in methods.values()
    }
    assert operations == {
        "list_audit_logs",
        "get_audit_checkpoint",
        "list_audit_entries",
        "get_audit_inclusion_proof",
        "get_audit_consistency_proof",
        "get_subject_audit_history",
        "get_residency_report",
        "get_audit_verifier_key",
    }
    checkpoint = spec["paths"]["/v1/audit/logs/{log}/checkpoint"]["get"]
    assert "text/plain" in checkpoint["responses"]["200"]["content"]
