"""The command line's log levels: quiet by default (warnings, libraries' too: botocore's "Found
credentials" is not news), ``-v`` for domicile's INFO lines, ``-vv`` for more, ``-q`` less."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.cli import invoke

pytestmark = pytest.mark.anyio


def levels() -> tuple[int, int]:
    return (
        logging.getLogger("domicile.keys").getEffectiveLevel(),
        logging.getLogger("botocore.credentials").getEffectiveLevel(),
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), (logging.WARNING, logging.WARNING)),
        (("-v",), (logging.INFO, logging.WARNING)),
        (("-vv",), (logging.DEBUG, logging.INFO)),
        (("-q",), (logging.ERROR, logging.ERROR)),
    ],
)
async def test_levels(tmp_path: Path, flags: tuple[str, ...], expected: tuple[int, int]) -> None:
    env = {"DOMICILE_DATA_DIR": str(tmp_path / "d")}
    made = await invoke(*flags, "keys", "list", env=env)
    assert made.exit_code == 0, made.output
    assert levels() == expected
    await invoke("keys", "list", env=env)  # back to the default for the next tests
    handlers = [h for h in logging.getLogger().handlers if type(h).__module__ != "_pytest.logging"]
    assert len(handlers) == 1  # one per process, however many commands it ran
