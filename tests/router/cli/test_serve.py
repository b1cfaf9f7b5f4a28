"""``domicile serve`` as the README starts it: the embedded default, in a real process."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import DOMICILE
from tests.support.ports import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`domicile serve` on the embedded default, as the README starts it."""
    port = free_port()
    data = tmp_path / "domicile-data"
    env = {**os.environ, "DOMICILE_DATA_DIR": str(data)}
    env.pop("DOMICILE_CONFIG", None)
    proc = subprocess.Popen(
        [str(DOMICILE), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url, data
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    assert "admin.key" in output  # the path is logged…
    secret = (data / "admin.key").read_text().strip()
    assert secret not in output  # …never the secret


def test_embedded_default_serves_the_readme_tour(served: tuple[str, Path]) -> None:
    url, data = served
    for name in ("admin.key", "pseudonym.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    key = (data / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers) as client:
        placed = client.post(
            "/v1/subjects", json={"subject_id": "ivan.petrov", "jurisdiction": "RU"}
        )
        assert placed.status_code == 201
        assert placed.json()["shard"] == "ru-msk-1"
        put = client.put("/v1/subjects/ivan.petrov/records/profile/main", json={"city": "Kazan"})
        assert put.status_code == 200
        got = client.get("/v1/subjects/ivan.petrov/records/profile/main")
        assert got.headers["x-domicile-region"] == "ru-msk"
        refused = client.post("/v1/subjects", json={"subject_id": "li.wei", "jurisdiction": "CN"})
        assert refused.status_code == 422
    assert (data / "shards" / "ru-msk-1.sqlite").exists()
