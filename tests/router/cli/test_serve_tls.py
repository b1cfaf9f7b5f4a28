"""``domicile serve --tls-cert/--tls-key``: the API over HTTPS, with a certificate made in the
test; one without the other is a usage error."""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import time
from pathlib import Path

import httpx
from cryptography import x509

from tests.support.cli import DOMICILE
from tests.support.ports import free_port
from tests.support.tls import issue, make_ca


def test_serve_speaks_https(tmp_path: Path) -> None:
    ca, ca_cert, ca_key = make_ca(tmp_path, "test-ca")
    cert, key = issue(ca_cert, ca_key, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "api.crt").write_bytes(cert)
    (tmp_path / "api.key").write_bytes(key)
    trusted = ssl.create_default_context(cafile=str(ca))
    port = free_port()
    env = {**os.environ, "DOMICILE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DOMICILE_CONFIG", None)
    args = [str(DOMICILE), "serve", "--port", str(port)]
    tls = ["--tls-cert", str(tmp_path / "api.crt"), "--tls-key", str(tmp_path / "api.key")]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*args, *tls], env=env, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert answer.json() == {"status": "ok"}
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            plain_refused = False
        except httpx.TransportError:
            plain_refused = True
        assert plain_refused  # plain HTTP is not spoken on the HTTPS port
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    alone = subprocess.run(
        [*args, "--tls-cert", str(tmp_path / "api.crt")], env=env, capture_output=True, text=True
    )
    assert alone.returncode == 2
    assert alone.stderr.strip() == "domicile: --tls-cert and --tls-key go together"
