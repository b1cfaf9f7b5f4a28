"""``domicile serve`` in its own process on a free port, as an operator runs it, and keys made
for it with ``domicile keys create``, as the README says."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.cli import DOMICILE
from tests.support.ports import free_port


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    config: Path | None

    def key(self, *scopes: str) -> str:
        """A new API key with these scopes: the last line of ``domicile keys create``."""
        args = [str(DOMICILE), "keys", "create", "--name", "test"]
        args += [arg for scope in scopes for arg in ("--scope", scope)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1]


@contextmanager
def serve(data_dir: Path, config: Path | None = None) -> Iterator[Server]:
    """The server on ``config``, or on the embedded default with its data in ``data_dir``."""
    port = free_port()
    env = {**os.environ, "DOMICILE_DATA_DIR": str(data_dir)}
    env.pop("DOMICILE_CONFIG", None)
    args = [str(DOMICILE), "serve", "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield Server(url, env, config)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"domicile serve exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"domicile serve did not answer within 60 s: {log.read_text()}")
