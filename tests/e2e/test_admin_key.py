"""The first day on the embedded default: ``admin.key`` holds a usable admin key or is absent,
made by the first server start on a deployment that never had an admin key, whatever ran
first; processes started together on a new data dir all succeed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.cli import DOMICILE, invoke
from tests.support.server import serve


def _works(url: str, key: str) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{url}/v1/keys", headers=headers).status_code == 200


def _server_log(data: Path) -> str:
    return "".join(p.read_text() for p in sorted(data.parent.glob("serve-*.log")))


@pytest.mark.anyio
async def test_admin_key_file_follows_the_catalog(tmp_path: Path) -> None:
    data = tmp_path / "domicile-data"
    env = {"DOMICILE_DATA_DIR": str(data)}
    # A service key made before the first start: the server still makes an admin key.
    made = await invoke("keys", "create", "--name", "billing", "--scope", "records:read", env=env)
    assert made.exit_code == 0, made.output
    with serve(data) as server:
        first = (data / "admin.key").read_text().strip()
        assert _works(server.url, first)
        first_id = first.split("_")[1]

    # Its key revoked (and another made): the next start removes the file and makes no other
    # (the operator meant it), saying how to make one.
    ops = await invoke("keys", "create", "--name", "ops", "--scope", "admin", env=env)
    assert (await invoke("keys", "revoke", first_id, env=env)).exit_code == 0
    with serve(data) as server:
        assert not (data / "admin.key").exists()
        assert not _works(server.url, first)
        assert _works(server.url, ops.stdout.strip().splitlines()[-1])
    log = _server_log(data)
    assert "removed" in log
    assert "`domicile keys create --name NAME --scope admin` makes one" in log
    assert "Traceback" not in log


def test_serve_and_keys_create_started_together(tmp_path: Path) -> None:
    data = tmp_path / "domicile-data"
    env = {**os.environ, "DOMICILE_DATA_DIR": str(data)}
    env.pop("DOMICILE_CONFIG", None)
    creating = [
        subprocess.Popen(
            [str(DOMICILE), "keys", "create", "--name", f"k{n}", "--scope", "admin"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    with serve(data) as server:
        for proc in creating:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
            assert _works(server.url, out.strip().splitlines()[-1])
    assert "Traceback" not in _server_log(data)
