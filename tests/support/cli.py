"""The ``domicile`` command line: in-process through click's runner (in a worker thread, since a
command runs its own event loop), or in its own process as a user runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from domicile.router.cli import main

#: The installed console script.
DOMICILE = Path(sys.executable).with_name("domicile")


async def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """``domicile …`` in-process, with the arguments as given."""
    argv = [str(a) for a in args]
    return await asyncio.to_thread(CliRunner().invoke, main, argv, env=env, catch_exceptions=False)


async def cli(config: Path, *args: str) -> Result:
    """``domicile … --config config`` in-process."""
    return await invoke(*args, "--config", config)


def spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "domicile.router.cli", *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def console(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, as a user runs it."""
    return subprocess.run(
        [str(DOMICILE), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
