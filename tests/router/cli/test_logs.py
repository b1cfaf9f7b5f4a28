"""The command line's log levels: domicile's INFO lines shown, libraries' only from WARNING
(botocore's "Found credentials" is not news), ``-v`` and ``-q`` moving both."""

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
        ((), (logging.INFO, logging.WARNING)),
        (("-v",), (logging.DEBUG, logging.INFO)),
        (("-q",), (logging.WARNING, logging.WARNING)),
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
