"""``domicile audit key rotate``: checkpoints before a rotation verify with the old key and those
after with the new; a verifier holding only the first key follows the chain through every
rotation, on the databases and offline on the archive; a forged rotation entry fails, by index."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import httpx
import pytest

from domicile.audit.checkpoint import open_checkpoint
from domicile.audit.errors import NoteError
from domicile.audit.events import KEY_ROTATED, SYSTEM, canonical_json, make_leaf, rfc3339
from domicile.audit.note import Signer, Verifier, sign_note
from domicile.audit.store import issue_checkpoint
from domicile.router.config import load_settings
from domicile.router.runtime import open_runtime
from tests.support.api import Api, start_api, write_some
from tests.support.cli import console, invoke
from tests.support.deployment import Deployment, drop_databases, make_deployment, query_shard
from tests.support.server import serve

LOGS = ("ru-msk-1", "eu-fra-1", "us-east-1")


@pytest.fixture
async def archived(tmp_path: Path, backend: str) -> AsyncIterator[Deployment]:
    """A deployment archiving bundles of 3 entries to its local folder."""
    dep = await make_deployment(tmp_path, backend, "[audit.archive]\nbundle_size = 3")
    yield dep
    if dep.databases:
        await drop_databases(dep.databases)


async def write(dep: Deployment, subjects: dict[str, str]) -> Verifier:
    """Write through the app, checkpoint every log; returns the key the app serves."""
    async with aclosing(cast(AsyncGenerator[Api], start_api(dep.settings()))) as apis:
        api = await anext(apis)
        await write_some(api, subjects, records=2)
        for log in LOGS:
            answer = await api.request("GET", f"/v1/audit/logs/{log}/checkpoint", "audit:read")
            assert answer.status_code == 200, answer.text
        return Verifier.parse((await api.client.get("/v1/audit/key")).text.strip())


async def rotate(dep: Deployment) -> Verifier:
    result = await invoke("audit", "key", "rotate", "--config", dep.config)
    assert result.exit_code == 0, result.output
    for log in LOGS:
        assert f"{log}: rotated; checkpoint of size" in result.stdout
    return Verifier.parse(result.stdout.splitlines()[-1])


async def verify(*args: str | Path) -> tuple[int, str, str]:
    result = await invoke("audit", "verify", "--no-state", *args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.anyio
async def test_rotation_chain_verifies(archived: Deployment) -> None:
    dep = archived
    first = await write(dep, {"ivan": "RU", "hans": "DE"})
    shown = await invoke("audit", "key", "--config", dep.config)
    assert shown.stdout.strip() == first.vkey

    second = await rotate(dep)
    assert second != first
    assert second.name == first.name
    assert (await write(dep, {"olga": "RU"})) == second  # the server serves the new key
    third = await rotate(dep)
    await write(dep, {"pyotr": "RU", "anna": "DE"})
    shown = await invoke("audit", "key", "--config", dep.config)
    assert shown.stdout.strip() == third.vkey
    assert not list(dep.data_dir.glob("*.next"))  # every log rotated: the old key is gone

    archived = await invoke("audit", "archive", "--config", dep.config)
    assert archived.exit_code == 0, archived.output
    archive = dep.data_dir / "archive"
    for key in (first, second, third):  # from the first key, or any later one of the chain
        code, out, err = await verify("--config", dep.config, "--key", key.vkey)
        assert code == 0, err
        assert "ru-msk-1: ok" in out
        code, out, err = await verify("--archive", archive, "--key", key.vkey)
        assert code == 0, err
        assert "ru-msk-1: ok" in out
        assert "eu-fra-1: ok" in out

    # Each archived checkpoint is signed with the key of its time, and only with it.
    signers = []
    for note_file in sorted((archive / "ru-msk-1" / "checkpoints").iterdir()):
        note = note_file.read_text()
        signers.append(next(k for k in (first, second, third) if _opens(note, k)))
        assert sum(_opens(note, k) for k in (first, second, third)) == 1
    assert signers == sorted(signers, key=[first, second, third].index)
    assert {first, third} <= set(signers)

    unrelated = Signer.generate(first.name).verifier()
    code, _, err = await verify("--config", dep.config, "--key", unrelated.vkey, "--log", LOGS[1])
    assert code == 1
    assert "log eu-fra-1, entry " in err
    assert "neither it nor a key it was rotated to" in err


@pytest.mark.anyio
async def test_a_new_log_takes_the_chain(deployment: Deployment) -> None:
    """A log nothing has signed yet when the deployment has rotated (a shard added later)
    starts with the deployment's rotations: the first key verifies it too."""
    first = await write(deployment, {"hans": "DE"})
    await rotate(deployment)
    await rotate(deployment)
    for table in ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_pending"):
        await query_shard(deployment, "eu-fra-1", f"DELETE FROM {table}")
    await query_shard(deployment, "eu-fra-1", "DELETE FROM audit_state")
    await write(deployment, {"greta": "DE"})
    events = await query_shard(
        deployment, "eu-fra-1", "SELECT leaf FROM audit_entries ORDER BY idx"
    )
    assert sum(bytes(leaf).count(b'"event":"key.rotated"') for (leaf,) in events) == 2
    code, out, err = await verify("--config", deployment.config, "--key", first.vkey)
    assert code == 0, err
    # the policy declared anew (its entry went with the rest), two rotations, a registration,
    # two records
    assert "eu-fra-1: ok, 6 entries" in out


def _opens(note: str, key: Verifier) -> bool:
    try:
        open_checkpoint(note, [key])
    except NoteError:
        return False
    return True


@pytest.mark.anyio
async def test_forged_rotation_fails(deployment: Deployment) -> None:
    """Someone without the key appends a rotation to a key of their own, and signs the log's
    checkpoints with it: the entry is named."""
    dep = deployment
    genuine = await write(dep, {"ivan": "RU"})
    forger = Signer.generate(genuine.name)
    time = rfc3339(datetime.now(UTC))
    statement = {"event": KEY_ROTATED, "new_key": forger.verifier_key()}
    statement |= {"old_key": genuine.vkey, "time": time}
    text = canonical_json(statement).decode() + "\n"
    async with open_runtime(dep.settings()) as runtime:
        store = runtime.audit.log("ru-msk-1")
        leaf = make_leaf(
            store.site,
            KEY_ROTATED,
            SYSTEM,
            time=datetime.fromisoformat(time),
            old_key=genuine.vkey,
            new_key=forger.verifier_key(),
            rotation=sign_note(text, [forger]),
        )
        assert await store.append_key_rotation(leaf, 0)
        size = await store.integrate()
        await issue_checkpoint(store, size, runtime.audit.origin("ru-msk-1"), forger)

    code, _, err = await verify("--config", dep.config, "--key", genuine.vkey)
    assert code == 1
    assert f"log ru-msk-1, entry {size - 1}: key rotation does not verify" in err
    assert "eu-fra-1" not in err  # the other logs verify


def test_running_server_signs_with_the_new_key(tmp_path: Path) -> None:
    """A server running through a rotation made by the CLI beside it takes the new key up."""
    with serve(tmp_path / "data") as server:
        admin = {"Authorization": f"Bearer {server.key('admin')}"}
        auditor = server.key("audit:read")
        subject = {"subject_id": "ivan", "jurisdiction": "RU"}
        assert httpx.post(f"{server.url}/v1/subjects", json=subject, headers=admin).is_success
        first = httpx.get(f"{server.url}/v1/audit/key").text.strip()

        rotated = console("audit", "key", "rotate", env=server.env)
        assert rotated.returncode == 0, rotated.stderr
        second = rotated.stdout.splitlines()[-1]
        assert httpx.put(
            f"{server.url}/v1/subjects/ivan/records/notes/n1", json={"n": 1}, headers=admin
        ).is_success
        checkpoint = httpx.get(
            f"{server.url}/v1/audit/logs/ru-msk-1/checkpoint",
            headers={"Authorization": f"Bearer {auditor}"},
        )
        assert _opens(checkpoint.text, Verifier.parse(second))
        assert httpx.get(f"{server.url}/v1/audit/key").text.strip() == second

        args = ("--url", server.url, "--api-key", auditor, "--no-state", "--key")
        verified = console("audit", "verify", *args, first, env=server.env)
        assert verified.returncode == 0, verified.stderr
        # 2 migrations, the policy, 2 writes, the rotation
        assert "ru-msk-1: ok, 6 entries" in verified.stdout


@pytest.mark.anyio
async def test_a_log_out_of_reach_keeps_the_old_key(tmp_path: Path) -> None:
    """A rotation that cannot reach every log exits 1 and keeps both keys; run again once the
    shard is back, it completes, and the chain verifies from the first key."""
    dep = await make_deployment(tmp_path, "sqlite")
    first = await write(dep, {"hans": "DE"})
    shard = dep.data_dir / "shards" / "eu-fra-1.sqlite"
    shard.rename(shard.with_suffix(".away"))  # an empty file in its place has no schema

    partial = await invoke("audit", "key", "rotate", "--config", dep.config)
    assert partial.exit_code == 1
    assert "domicile: eu-fra-1: not rotated yet: " in partial.stderr
    assert "ru-msk-1: rotated" in partial.stdout
    assert (await invoke("audit", "key", "--config", dep.config)).stdout.strip() == first.vkey
    pending = dep.data_dir / "audit-signing.key.next"
    assert pending.stat().st_mode & 0o777 == 0o600

    shard.with_suffix(".away").replace(shard)
    second = await rotate(dep)
    assert not pending.exists()
    assert (await invoke("audit", "key", "--config", dep.config)).stdout.strip() == second.vkey
    code, out, err = await verify("--config", dep.config, "--key", first.vkey)
    assert code == 0, err
    assert "eu-fra-1: ok" in out


@pytest.mark.anyio
async def test_a_router_without_the_new_key_file(deployment: Deployment, tmp_path: Path) -> None:
    """A router on another host, with its own copy of the key file: until the new file is
    copied there it cannot sign rotated logs (503 signing_key_unavailable), then it can."""
    await write(deployment, {"ivan": "RU"})
    key_file = deployment.data_dir / "audit-signing.key"
    copy = tmp_path / "other-host.key"
    copy.write_bytes(key_file.read_bytes())
    elsewhere = tmp_path / "other-host.toml"
    text = deployment.config.read_text()
    elsewhere.write_text(text.replace("[catalog]", f'[audit]\nsigning_key = "{copy}"\n\n[catalog]'))
    await rotate(deployment)

    settings = load_settings(elsewhere)
    async with aclosing(cast(AsyncGenerator[Api], start_api(settings))) as apis:
        api = await anext(apis)
        assert (await api.put("ivan", "notes", "later", {"n": 1})).status_code == 200
        url = "/v1/audit/logs/ru-msk-1/checkpoint"
        refused = await api.request("GET", url, "audit:read")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "signing_key_unavailable"
        assert refused.headers["Retry-After"] == "5"
        copy.write_bytes(key_file.read_bytes())
        answered = await api.request("GET", url, "audit:read")
        assert answered.status_code == 200
        served = (await api.client.get("/v1/audit/key")).text.strip()
        assert _opens(answered.text, Verifier.parse(served))
