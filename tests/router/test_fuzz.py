"""Property-based requests generated from our own OpenAPI document (schemathesis) against a
running server: whatever the input, the answer is never a 5xx, and every error carries the
contract's body."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

DOMICILE = str(Path(sys.executable).parent / "domicile")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tmp_path_factory.mktemp("fuzz") / "data"
    env = {**os.environ, "DOMICILE_DATA_DIR": str(data)}
    env.pop("DOMICILE_CONFIG", None)
    proc = subprocess.Popen(
        [DOMICILE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz")
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url, (data / "admin.key").read_text().strip()
    proc.terminate()
    proc.wait(timeout=10)


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
