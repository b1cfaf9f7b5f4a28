"""Policy history in the logs: a process opening the shards with a policy or region facts other
than a log's latest ``policy.changed`` entry declares appends one, before its own entries; many
processes starting together append one per log between them."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import rfc8785

from domicile.router.runtime import open_runtime
from tests.e2e.test_concurrent_start import PROCESSES, start_together
from tests.support.deployment import LOG_LEAVES, Deployment, query_shard
from tests.support.shards import ACTOR, SHARD_NAMES, audit_events, set_policy


async def policy_entries(dep: Deployment) -> dict[str, list[dict[str, object]]]:
    return {name: await audit_events(dep, name, "policy.changed") for name in SHARD_NAMES}


@pytest.mark.anyio
async def test_a_new_policy_is_logged_once_per_log_by_processes_starting_together(
    deployment: Deployment,
) -> None:
    async with open_runtime(deployment.settings()):
        pass
    before = await policy_entries(deployment)
    assert [len(e) for e in before.values()] == [1, 1, 1]
    set_policy(deployment.config, "RU", ["eu-fra"])
    env = {**os.environ, "DOMICILE_CONFIG": str(deployment.config)}
    done = start_together(["comply", "--dry-run"], env)
    assert [p.returncode for p in done] == [0] * PROCESSES, [p.stderr[-600:] for p in done]
    after = await policy_entries(deployment)
    assert [len(e) for e in after.values()] == [2, 2, 2]
    newest = after["eu-fra-1"][-1]
    policy = newest["policy"]
    assert isinstance(policy, dict)
    assert policy["RU"] == {"store_in": ["eu-fra"]}
    assert policy["DE"] == policy["FR"] == {"store_in": ["eu-fra"]}  # the EU group, expanded
    assert policy["CN"] == {"store_in": []}
    assert policy["default"] == {"store_in": ["us-east"]}
    assert newest["policy_sha256"] == hashlib.sha256(rfc8785.dumps(policy)).hexdigest()
    assert {k: newest[k] for k in ("region", "country", "provider", "address", "legal_entity")} == {
        "region": "eu-fra",
        "country": "DE",
        "provider": "Example Cloud",
        "address": None,
        "legal_entity": None,
    }
    assert len({json.dumps(e[-1]["policy"], sort_keys=True) for e in after.values()}) == 1


@pytest.mark.anyio
async def test_region_facts_and_scheduled_rules_are_logged_before_the_next_entry(
    deployment: Deployment,
) -> None:
    text = deployment.config.read_text()
    text = text.replace(
        '[regions.ru-msk]\ncountry = "RU"',
        '[regions.ru-msk]\ncountry = "RU"\naddress = "Moscow, 1 Example St."\n'
        'legal_entity = "Example LLC"',
    ).replace(
        '[policy.RU]\nstore_in = ["ru-msk"]',
        '[policy.RU]\nstore_in = ["ru-msk"]\nlaw = "152-FZ art. 18(5)"\n'
        'effective = "2030-01-01T00:00:00Z"\nbefore = ["eu-fra"]',
    )
    deployment.config.write_text(text)
    async with open_runtime(deployment.settings()) as rt:
        await rt.store.register("ivan", "RU", ACTOR)
    async with open_runtime(deployment.settings()):  # the same again: nothing new
        pass
    ru = await audit_events(deployment, "ru-msk-1", "policy.changed")
    assert len(ru) == 1
    assert ru[0]["address"] == "Moscow, 1 Example St."
    assert ru[0]["legal_entity"] == "Example LLC"
    assert ru[0]["policy"]["RU"] == {  # type: ignore[index]
        "store_in": ["ru-msk"],
        "law": "152-FZ art. 18(5)",
        "effective": "2030-01-01T00:00:00Z",
        "before": ["eu-fra"],
    }
    rows = await query_shard(deployment, "ru-msk-1", LOG_LEAVES)
    events = [json.loads(bytes(leaf))["event"] for (leaf,) in rows]
    assert events.index("policy.changed") < events.index("subject.registered")
