from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domicile.router.config import Environment, load_settings
from domicile.router.errors import ConfigError
from domicile.shards.policy import ISO_CODES

BASE = """
[regions.ru-msk]
country = "RU"
[regions.us-east]
country = "US"
[shards.ru-msk-1]
region = "ru-msk"
url = "sqlite+aiosqlite:///x.sqlite"
[shards.us-east-1]
region = "us-east"
url = "sqlite+aiosqlite:///y.sqlite"
[policy.RU]
store_in = ["ru-msk"]
[policy.default]
store_in = ["us-east"]
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "domicile.toml"
    path.write_text(text)
    return load_settings(path)


def test_embedded_default_topology(tmp_path: Path) -> None:
    settings = load_settings(env=Environment(config=None, data_dir=tmp_path))
    topo = settings.topology
    assert settings.embedded
    assert [s.name for s in topo.permitted_shards("RU")] == ["ru-msk-1"]
    assert [s.name for s in topo.permitted_shards("FR")] == ["eu-fra-1"]
    assert [s.name for s in topo.permitted_shards("BR")] == ["us-east-1"]
    assert topo.permitted_shards("CN") == ()
    assert "RU" not in topo.jurisdictions_for_shard("us-east-1")
    assert "CN" not in topo.jurisdictions_for_shard("us-east-1")
    assert "DE" in topo.jurisdictions_for_shard("eu-fra-1")
    assert str(tmp_path) in settings.topology.shards["ru-msk-1"].url


def test_minimal_file_is_complete(tmp_path: Path) -> None:
    settings = load(tmp_path, BASE)
    assert settings.deployment == "local"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (BASE + "\n[api]\nmax_bytes = 3\n", "api.max_bytes: unknown key"),
        (BASE.replace('country = "RU"', 'contry = "RU"'), "regions.ru-msk.contry: unknown key"),
        (BASE + '\n[policy.DE]\nstore_in = ["eu-fra"]\n', "policy.DE.store_in: 'eu-fra'"),
        (
            BASE.replace('region = "ru-msk"', 'region = "ru-spb"'),
            "shards.ru-msk-1.region: 'ru-spb' is not a declared region",
        ),
        (BASE + '\n[policy.XX]\nstore_in = ["us-east"]\n', "policy.XX: 'XX' is not an ISO"),
        (BASE + '\n[policy.ru]\nstore_in = ["us-east"]\n', "policy.ru: 'ru' is not an ISO"),
        (BASE.replace('country = "US"', 'country = "USA"'), "regions.us-east.country: 'USA'"),
        (BASE + '\n[groups]\nNORDIC = ["SE", "NOPE"]\n', "groups.NORDIC: 'NOPE'"),
        ("[regions", "not valid TOML"),
        (
            BASE.replace('url = "sqlite+aiosqlite:///x.sqlite"', 'url = "mysql://x"'),
            "shards.ru-msk-1.url",
        ),
        ("deployment = 5\n" + BASE, "deployment: Input should be a valid string (got 5)"),
        ("deployment = 'Bad Name'\n" + BASE, "deployment: String should match pattern"),
    ],
)
def test_invalid_configs_name_the_key(tmp_path: Path, edit: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, edit)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_groups_and_precedence(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[regions.eu-fra]
country = "DE"
[shards.eu-fra-1]
region = "eu-fra"
url = "sqlite+aiosqlite:///z.sqlite"
[groups]
NORDIC = ["NO", "IS"]
[policy.EU]
store_in = ["eu-fra"]
[policy.NORDIC]
store_in = ["eu-fra"]
[policy.FR]
store_in = ["us-east"]
"""
    )
    topo = load(tmp_path, text).topology  # type: ignore[attr-defined]
    assert topo.permitted_regions("DE") == ("eu-fra",)
    assert topo.permitted_regions("NO") == ("eu-fra",)
    assert topo.permitted_regions("FR") == ("us-east",)  # own rule beats its group
    assert topo.permitted_regions("JP") == ("us-east",)
    # The write path's shortcut agrees with the rules for every country and shard.
    for code in ISO_CODES:
        for name, spec in topo.shards.items():
            assert topo.is_permitted(code, name) == (spec.region in topo.permitted_regions(code))
    assert not topo.is_permitted("DE", "no-such-shard")


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_PASSWORD", "s3cret")
    text = BASE.replace(
        "sqlite+aiosqlite:///x.sqlite", "postgresql+asyncpg://u:${SHARD_PASSWORD}@db/ru"
    )
    settings = load(tmp_path, text)
    assert "s3cret" in settings.topology.shards["ru-msk-1"].url  # type: ignore[attr-defined]
    monkeypatch.delenv("SHARD_PASSWORD")
    with pytest.raises(ConfigError, match=r"shards\.ru-msk-1\.url: environment variable"):
        load(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


SCHEDULED = BASE.replace(
    'store_in = ["ru-msk"]\n',
    'store_in = ["ru-msk"]\neffective = "2015-09-01T00:00:00+03:00"\nbefore = ["us-east"]\n',
)


def test_a_rule_with_an_effective_time(tmp_path: Path) -> None:
    topo = load(tmp_path, SCHEDULED).topology  # type: ignore[attr-defined]
    rule = topo.rules["RU"]
    assert rule.effective == datetime(2015, 8, 31, 21, tzinfo=UTC)
    before, after = datetime(2015, 8, 31, tzinfo=UTC), datetime(2015, 9, 1, tzinfo=UTC)
    assert topo.is_permitted("RU", "us-east-1", before)
    assert not topo.is_permitted("RU", "us-east-1", after)
    assert not topo.is_target("RU", "us-east-1")  # comply moves them either way
    assert "RU" in topo.jurisdictions_for_shard("us-east-1", before)
    assert "RU" not in topo.jurisdictions_for_shard("us-east-1", after)
    assert topo.next_change(before) == rule.effective
    assert topo.next_change(after) is None
    assert [s.name for s in topo.permitted_shards("RU")] == ["ru-msk-1"]  # new subjects


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (SCHEDULED.replace("+03:00", ""), "policy.RU.effective: 2015-09-01T00:00:00 has no offset"),
        (SCHEDULED.replace("2015-09-01T", "1 September "), "is not an RFC 3339 time"),
        (SCHEDULED.replace('"us-east"]', '"mars"]'), "policy.RU.before: 'mars' is not a declared"),
        (
            BASE.replace(
                'store_in = ["ru-msk"]\n', 'store_in = ["ru-msk"]\nbefore = ["us-east"]\n'
            ),
            "policy.RU.before: only a rule with `effective` has one",
        ),
    ],
)
def test_invalid_schedules_name_the_key(tmp_path: Path, edit: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, edit)


def test_lookup_kinds(tmp_path: Path) -> None:
    embedded = load_settings(env=Environment(config=None, data_dir=tmp_path))
    assert dict(embedded.lookup_kinds) == {
        "email": "email",
        "phone": "phone",
        "username": "casefold",
    }
    assert embedded.lookup_key_path == tmp_path.resolve() / "lookup.key"
    assert load(tmp_path, BASE).lookup_kinds == embedded.lookup_kinds  # type: ignore[attr-defined]
    declared = load(tmp_path, BASE + '[lookups.login]\nnormalize = "casefold"\n')
    assert declared.lookup_kinds == {"login": "casefold"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('[lookups.email]\nnormalize = "lower"\n', "lookups.email.normalize: Input should be"),
        ('[lookups.email]\nnormalise = "email"\n', "lookups.email.normalise: unknown key"),
        ('[lookups.E-Mail]\nnormalize = "email"\n', "lookups.E-Mail: a kind is 1-32 of"),
    ],
)
def test_invalid_lookup_kinds_name_the_key(tmp_path: Path, edit: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, BASE + edit)


def test_the_lookup_secret_from_the_environment(tmp_path: Path) -> None:
    env = Environment(config=None, data_dir=tmp_path, lookup_secret="ab" * 32)
    assert load_settings(env=env).lookup_secret == bytes.fromhex("ab" * 32)
    with pytest.raises(ConfigError, match="DOMICILE_LOOKUP_SECRET: must be at least 64"):
        load_settings(env=Environment(config=None, data_dir=tmp_path, lookup_secret="abc"))
