"""The command line as users run it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

DOMICILE = [str(Path(sys.executable).parent / "domicile")]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOMICILE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`domicile serve` on the embedded default, as the README starts it."""
    port = _free_port()
    data = tmp_path / "domicile-data"
    env = {**os.environ, "DOMICILE_DATA_DIR": str(data)}
    env.pop("DOMICILE_CONFIG", None)
    proc = subprocess.Popen(
        [*DOMICILE, "serve", "--port", str(port)],
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


def test_keys_create_prints_the_secret_last(tmp_path: Path) -> None:
    env = {"DOMICILE_DATA_DIR": str(tmp_path / "d")}
    result = run(
        "keys",
        "create",
        "--name",
        "billing",
        "--scope",
        "records:read",
        "--scope",
        "records:write",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("dmk_")
    bad = run("keys", "create", "--name", "x", "--scope", "records:delete", env=env)
    assert bad.returncode == 2
    assert "records:delete" in bad.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[regions.a]\ncountry = "RU"\nbogus = 1\n', "regions.a.bogus: unknown key"),
        (
            '[regions.a]\ncountry = "ZZ"\n[shards.s]\nregion = "a"\nurl = "sqlite+aiosqlite:///x"\n'
            '[policy.default]\nstore_in = ["a"]\n',
            "regions.a.country: 'ZZ'",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "domicile.toml"
    path.write_text(config)
    result = run("shards", "status", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_missing_config_file_is_usage_error(tmp_path: Path) -> None:
    result = run("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
