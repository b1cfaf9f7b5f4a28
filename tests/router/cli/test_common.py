"""What every command shares, run as a user runs it: a bad or missing config file is bad usage
(exit 2), said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import console


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
    result = console("shards", "status", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_missing_config_file_is_usage_error(tmp_path: Path) -> None:
    result = console("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
