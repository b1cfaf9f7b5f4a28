"""At rest: the data dir is 0700 and every file domicile writes there is 0600 (shard and
catalog databases with their journals, keys, the local archive), whatever the umask; a data
dir with looser modes is tightened at start, with a warning saying what changed."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from domicile.audit.archive import LocalStore
from domicile.router.config import Environment, load_settings
from tests.support.api import start_api

pytestmark = pytest.mark.anyio


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.usefixtures("usual_umask")
async def test_everything_in_the_data_dir_is_private(tmp_path: Path) -> None:
    data = tmp_path / "deep" / "domicile-data"
    settings = load_settings(env=Environment(config=None, data_dir=data))
    async for api in start_api(settings):
        assert (await api.register("ann", "US")).status_code == 201
        assert (await api.put("ann", "profile", "main", {"v": 1})).status_code == 200
        found = modes(data)
    assert any(name.endswith("-wal") for name in found), found  # SQLite's journals are there
    loose = {
        name: f"{mode:o}"
        for name, mode in found.items()
        if mode != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert loose == {}


@pytest.mark.usefixtures("usual_umask")
def test_archived_segments_are_private(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    LocalStore(root).write("ru-msk-1/bundles/000000.json", b"{}")
    assert modes(root) == {".": 0o700, "ru-msk-1": 0o700, "ru-msk-1/bundles": 0o700,
                           "ru-msk-1/bundles/000000.json": 0o600}  # fmt: skip


@pytest.mark.usefixtures("usual_umask")
async def test_a_loose_data_dir_is_tightened_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "domicile-data"
    settings = load_settings(env=Environment(config=None, data_dir=data))
    async for _ in start_api(settings):
        pass
    data.chmod(0o755)
    (data / "catalog.sqlite").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="domicile"):
        async for _ in start_api(settings):
            pass
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "catalog.sqlite").stat().st_mode) == 0o600
    [warning] = [r.getMessage() for r in caplog.records if "private" in r.getMessage()]
    assert "made 2 paths" in warning
    assert "catalog.sqlite (644)" in warning
