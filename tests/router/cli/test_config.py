"""``domicile config show|check`` as a user runs them: the embedded default shown as a file that
checks, a password never printed, a bad file refused in one line with exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.support.cli import invoke

pytestmark = pytest.mark.anyio


async def test_the_embedded_default_shown_is_a_valid_config(tmp_path: Path) -> None:
    env = {"DOMICILE_DATA_DIR": str(tmp_path / "data"), "DOMICILE_CONFIG": None}
    shown = await invoke("config", "show", env=env)  # type: ignore[arg-type]
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("# domicile's effective configuration: the embedded default")
    document = tomllib.loads(shown.output)
    assert document["policy"]["CN"]["store_in"] == []
    assert document["shards"]["ru-msk-1"]["region"] == "ru-msk"
    assert document["catalog"]["url"].endswith(f"{tmp_path}/data/catalog.sqlite")
    assert not (tmp_path / "data").exists()  # showing creates nothing
    saved = tmp_path / "domicile.toml"
    saved.write_text(shown.output)
    checked = await invoke("config", "check", saved)
    assert checked.exit_code == 0, checked.output
    assert checked.output == f"{saved}: valid (3 regions, 3 shards, 4 policy rules)\n"


async def test_passwords_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_PASSWORD", "hunter2-secret")
    config = tmp_path / "domicile.toml"
    config.write_text(
        '[regions.ru-msk]\ncountry = "RU"\n\n[shards.ru-msk-1]\nregion = "ru-msk"\n'
        'url = "postgresql+asyncpg://domicile:${SHARD_PASSWORD}@db.internal/ru"\n\n'
        '[policy.default]\nstore_in = ["ru-msk"]\n\n'
        '[redis]\nurl = "redis://:hunter2-secret@127.0.0.1:6379/0"\n'
    )
    shown = await invoke("config", "show", "--config", config)
    assert shown.exit_code == 0, shown.output
    assert "hunter2" not in shown.output
    document = tomllib.loads(shown.output.split("\n", 1)[1])
    assert (
        document["shards"]["ru-msk-1"]["url"] == "postgresql+asyncpg://domicile:***@db.internal/ru"
    )
    assert document["redis"]["url"] == "redis://:***@127.0.0.1:6379/0"


async def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "domicile.toml"
    config.write_text('[regions.ru-msk]\ncountry = "RU"\nprovidr = "typo"\n')
    checked = await invoke("config", "check", config)
    assert checked.exit_code == 2
    assert checked.output == "domicile: config: regions.ru-msk.providr: unknown key\n"
    missing = await invoke("config", "check", tmp_path / "none.toml")
    assert missing.exit_code == 2
    assert missing.output.count("\n") == 1
    assert "does not exist" in missing.output
