"""``domicile keys create`` as a user runs it: the secret on the last line, bad scopes refused."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import console


def test_keys_create_prints_the_secret_last(tmp_path: Path) -> None:
    env = {"DOMICILE_DATA_DIR": str(tmp_path / "d")}
    result = console(
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
    bad = console("keys", "create", "--name", "x", "--scope", "records:delete", env=env)
    assert bad.returncode == 2
    assert "records:delete" in bad.stderr
