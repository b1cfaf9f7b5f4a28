"""Property-based requests generated from our own OpenAPI document (schemathesis) against a
running server: whatever the input, the answer is never a 5xx, and every error carries the
contract's body."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.server import serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with serve(tmp_path_factory.mktemp("fuzz") / "data") as running:
        yield running.url, running.key("admin")


def test_no_input_gets_a_server_error(server: tuple[str, str]) -> None:
    url, key = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 500:
                failures.append(
                    f"{case.operation.label}: {response.status_code} {response.text[:120]}"
                )
            elif response.status_code >= 400:
                body = response.json()
                if not (isinstance(body.get("error"), dict) and body["error"].get("code")):
                    failures.append(f"{case.operation.label}: error body {response.text[:120]}")

        check()
    assert failures == []
