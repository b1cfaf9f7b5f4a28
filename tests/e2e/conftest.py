"""End-to-end fixtures: deployments whose policy changes under them."""

from __future__ import annotations

import pytest

from tests.support.deployment import Deployment
from tests.support.shards import seed, set_policy


@pytest.fixture
async def law_change(deployment: Deployment) -> tuple[Deployment, dict[str, str]]:
    """The seed scenario: RU subjects stored in the EU region while the policy allowed it; then
    the policy is changed to require Russia. Yields the deployment and its RU subjects."""
    set_policy(deployment.config, "RU", ["eu-fra"])
    ru = {f"ivan-{i}": "RU" for i in range(12)}
    await seed(deployment.settings(), {**ru, "de-0": "DE", "de-1": "FR", "us-0": "US"})
    set_policy(deployment.config, "RU", ["ru-msk"])
    return deployment, ru
