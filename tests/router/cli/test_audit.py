"""``domicile audit key`` and ``domicile audit log``: the residency log as a person reads it."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from domicile.shards.pseudonym import Pseudonymizer
from tests.support.api import Api, write_some
from tests.support.cli import invoke
from tests.support.deployment import SHARDS, Deployment

pytestmark = pytest.mark.anyio


async def test_key_matches_the_served_key(api: Api, deployment: Deployment) -> None:
    result = await invoke("audit", "key", "--config", deployment.config)
    assert result.exit_code == 0
    assert result.stdout == (await api.client.get("/v1/audit/key")).text
    key_file = deployment.data_dir / "audit-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_log_lines(api: Api, deployment: Deployment) -> None:
    await write_some(api, {"ivan": "RU", "hans": "DE"}, records=1)
    await api.request("DELETE", "/v1/subjects/hans")
    result = await invoke("audit", "log", "--config", deployment.config)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    pseudonyms = Pseudonymizer(bytes.fromhex((deployment.data_dir / "pseudonym.key").read_text()))
    ivan, hans = pseudonyms.subject("ivan"), pseudonyms.subject("hans")
    declared = [line.split()[1:] for line in lines if line.split()[1] == "policy.changed"]
    assert sorted(declared) == [  # the server's start declared the policy in each log
        ["policy.changed", "-", shard, region, "-"] for shard, region in sorted(SHARDS.items())
    ]
    lines = lines[len(declared) :]
    assert [line.split()[1:] for line in lines] == [
        ["subject.registered", "RU", "ru-msk-1", "ru-msk", ivan],
        ["record.put", "RU", "ru-msk-1", "ru-msk", ivan],
        ["subject.registered", "DE", "eu-fra-1", "eu-fra", hans],
        ["record.put", "DE", "eu-fra-1", "eu-fra", hans],
        ["subject.erased", "DE", "eu-fra-1", "eu-fra", hans],
    ]
    times = [line.split()[0] for line in lines]
    assert times == sorted(times)  # newest last
    assert len({line.rindex(" ") for line in lines}) == 1  # in columns

    only_hans = await invoke("audit", "log", "--config", deployment.config, "--subject", "hans")
    assert [line.split()[1] for line in only_hans.stdout.splitlines()] == [
        "subject.registered",
        "record.put",
        "subject.erased",
    ]
    only_ru = await invoke("audit", "log", "--config", deployment.config, "--log", "ru-msk-1")
    assert len(only_ru.stdout.splitlines()) == 3
    future = await invoke("audit", "log", "--config", deployment.config, "--since", "2999-01-01")
    assert future.exit_code == 0
    assert future.stdout == ""
    recent = await invoke("audit", "log", "--config", deployment.config, "--since", "1h")
    assert recent.stdout == result.stdout
    assert "ivan" not in result.stdout
    assert "hans" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--since", "yesterday"), ("--log", "nope"), ("--subject", "bad id")],
)
async def test_log_usage_errors(deployment: Deployment, args: tuple[str, ...]) -> None:
    result = await invoke("audit", "log", "--config", deployment.config, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("domicile: ")
    assert result.stderr.count("\n") == 1


async def test_log_follow_prints_new_entries(api: Api, deployment: Deployment) -> None:
    domicile = Path(sys.executable).with_name("domicile")
    follower = await asyncio.create_subprocess_exec(
        domicile, "audit", "log", "--config", deployment.config, "--follow", stdout=PIPE
    )
    try:
        await write_some(api, {"ivan": "RU"}, records=1)
        assert follower.stdout is not None
        async with asyncio.timeout(30):
            events = []
            while len(events) < 2:
                event = (await follower.stdout.readline()).split()[1]
                if event != b"policy.changed":  # the server's start declared the policy
                    events.append(event)
        assert events == [b"subject.registered", b"record.put"]
    finally:
        follower.terminate()
        await follower.wait()
