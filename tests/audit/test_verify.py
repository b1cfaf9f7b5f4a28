"""``domicile audit verify`` on a deployment's databases: a clean log verifies; any entry
altered, removed, reordered or inserted behind domicile's back fails, naming log and index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.api import Api, write_some
from tests.support.cli import invoke
from tests.support.deployment import Deployment, query_shard

pytestmark = pytest.mark.anyio

LOG = "ru-msk-1"


async def checkpoint_all(api: Api) -> None:
    for log in ("ru-msk-1", "eu-fra-1", "us-east-1"):
        response = await api.request("GET", f"/v1/audit/logs/{log}/checkpoint", scope="audit:read")
        assert response.status_code == 200


async def sql(dep: Deployment, statement: str, *args: object) -> None:
    await query_shard(dep, LOG, statement, *args)


async def shift(dep: Deployment, at: int, by: int) -> None:
    """Move entries at index >= ``at`` by ``by``, via negative indices so that no intermediate
    state breaks the unique index."""
    await sql(dep, f"UPDATE audit_entries SET idx = -(idx + {by}) - 1 WHERE idx >= {at}")
    await sql(dep, "UPDATE audit_entries SET idx = -(idx + 1) WHERE idx < 0")


async def edit(dep: Deployment) -> None:
    [(leaf,)] = await query_shard(dep, LOG, "SELECT leaf FROM audit_entries WHERE idx = 3")
    forged = bytes(leaf).replace(b'"jurisdiction":"RU"', b'"jurisdiction":"DE"')
    assert forged != bytes(leaf)
    await sql(dep, "UPDATE audit_entries SET leaf = $1 WHERE idx = 3", forged)


async def delete(dep: Deployment) -> None:
    await sql(dep, "DELETE FROM audit_entries WHERE idx = 3")


async def delete_and_renumber(dep: Deployment) -> None:
    await delete(dep)
    await shift(dep, 4, -1)


async def reorder(dep: Deployment) -> None:
    await sql(dep, "UPDATE audit_entries SET idx = -1 WHERE idx = 3")
    await sql(dep, "UPDATE audit_entries SET idx = 3 WHERE idx = 4")
    await sql(dep, "UPDATE audit_entries SET idx = 4 WHERE idx = -1")


async def insert(dep: Deployment) -> None:
    [(leaf,)] = await query_shard(dep, LOG, "SELECT leaf FROM audit_entries WHERE idx = 2")
    await shift(dep, 3, 1)
    forged = "INSERT INTO audit_entries (id, leaf, subject, idx) VALUES (-1, $1, NULL, 3)"
    await sql(dep, forged, leaf)


TAMPERING = {
    "edit": edit,
    "delete": delete,
    "delete-renumber": delete_and_renumber,
    "reorder": reorder,
    "insert": insert,
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
async def test_tampering_names_log_and_index(
    api: Api, deployment: Deployment, tmp_path: Path, how: str
) -> None:
    await write_some(api, {"ivan": "RU", "olga": "RU", "hans": "DE"})
    await checkpoint_all(api)
    await write_some(api, {"pyotr": "RU"})
    await checkpoint_all(api)
    state = tmp_path / "witness.json"
    clean = await invoke("audit", "verify", "--config", deployment.config, "--state", state)
    assert clean.exit_code == 0, clean.output
    assert f"{LOG}: ok, 10 entries" in clean.stdout

    await TAMPERING[how](deployment)
    failed = await invoke("audit", "verify", "--config", deployment.config, "--no-state")
    assert failed.exit_code == 1, failed.output
    assert f"log {LOG}, entry 3:" in failed.stderr
    assert "eu-fra-1: ok" in failed.stdout
    assert "us-east-1: ok" in failed.stdout


async def test_witness_catches_a_truncated_log(
    api: Api, deployment: Deployment, tmp_path: Path
) -> None:
    await write_some(api, {"ivan": "RU"})
    await checkpoint_all(api)
    await write_some(api, {"olga": "RU"})
    await checkpoint_all(api)
    state = tmp_path / "witness.json"
    assert (
        await invoke("audit", "verify", "--config", deployment.config, "--state", state)
    ).exit_code == 0
    remembered = json.loads(state.read_text())["keys"]
    [(origins)] = remembered.values()
    assert origins[f"domicile/test/{LOG}"]["size"] == 7  # with the policy.changed entry

    # Drop the later history and its checkpoint: what is left is a consistent, shorter log.
    await sql(deployment, "DELETE FROM audit_checkpoints WHERE size > 4")
    await sql(deployment, "DELETE FROM audit_entries WHERE idx >= 4")
    stateless = await invoke("audit", "verify", "--config", deployment.config, "--no-state")
    assert stateless.exit_code == 0
    witnessed = await invoke("audit", "verify", "--config", deployment.config, "--state", state)
    assert witnessed.exit_code == 1
    assert f"log {LOG}: rolled back" in witnessed.stderr


async def test_forged_checkpoint_signature_fails(api: Api, deployment: Deployment) -> None:
    await write_some(api, {"ivan": "RU"})
    await checkpoint_all(api)
    [(note,)] = await query_shard(
        deployment, LOG, "SELECT note FROM audit_checkpoints WHERE size = 4"
    )
    forged = note.replace("\n4\n", "\n3\n", 1)
    await sql(deployment, "UPDATE audit_checkpoints SET note = $1 WHERE size = 4", forged)
    result = await invoke("audit", "verify", "--config", deployment.config, "--no-state")
    assert result.exit_code == 1
    assert f"log {LOG}: checkpoint of size 3 does not verify" in result.stderr


async def test_usage_errors(api: Api, deployment: Deployment, tmp_path: Path) -> None:
    key = (await api.client.get("/v1/audit/key")).text.strip()
    cases: list[tuple[str | Path, ...]] = [
        ("--log", "nope", "--config", deployment.config),
        ("--key", "not-a-key", "--config", deployment.config),
        ("--archive", tmp_path / "missing", "--key", key),
        ("--archive", tmp_path),
        ("--url", "http://127.0.0.1:9", "--archive", tmp_path),
        ("--url", "http://127.0.0.1:9", "--key", key),
    ]
    for args in cases:
        result = await invoke("audit", "verify", "--no-state", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("domicile: ")
        assert result.stderr.count("\n") == 1
