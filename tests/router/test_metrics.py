"""The metrics an SRE alerts on, read from a running app: audit backlog and checkpoint age per
log, moves by state, and subjects placed where the policy no longer permits them (also warned
about at start)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.api import Api, start_api
from tests.support.deployment import Deployment

pytestmark = pytest.mark.anyio


async def _metrics(api: Api, wanted: str) -> str:
    """The metrics page once it holds ``wanted`` (counted in the background at start)."""
    for _ in range(50):
        text = (await api.client.get("/metrics")).text
        if wanted in text:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wanted} not in /metrics:\n{text}")


async def test_audit_moves_and_misplaced_subjects(
    api: Api, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await api.register("ivan", "RU")).status_code == 201
    assert (await api.request("GET", "/v1/audit/logs/ru-msk-1/checkpoint")).status_code == 200
    text = await _metrics(api, 'domicile_audit_checkpoint_age_seconds{log="ru-msk-1"}')
    for series in (
        'domicile_audit_pending_entries{log="ru-msk-1"}',
        'domicile_audit_integration_lag_seconds{log="eu-fra-1"}',
        'domicile_catalog_up{cause=""} 1.0',
    ):
        assert series in text
    assert "domicile_misplaced_subjects{" not in text

    moved = await api.request("POST", "/v1/moves", json={"subject_id": "ivan", "to": "ru-msk-1"})
    assert moved.status_code == 409  # already there: no move is journaled
    config = deployment.config.read_text()
    deployment.config.write_text(
        config.replace('[policy.RU]\nstore_in = ["ru-msk"]', '[policy.RU]\nstore_in = ["us-east"]')
    )
    with caplog.at_level(logging.WARNING, logger="domicile.policy"):
        async for changed in start_api(deployment.settings()):
            text = await _metrics(changed, "domicile_misplaced_subjects{")
            assert 'domicile_misplaced_subjects{jurisdiction="RU",shard="ru-msk-1"} 1.0' in text
            move = {"subject_id": "ivan", "to": "us-east-1"}
            assert (await changed.request("POST", "/v1/moves", json=move)).status_code == 201
    assert (
        "1 subject is placed where the policy does not permit it (1 RU on ru-msk-1): "
        "`domicile comply --dry-run` lists them, `domicile comply` moves them" in caplog.messages
    )
