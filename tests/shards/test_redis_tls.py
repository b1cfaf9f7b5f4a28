"""Redis over TLS: a ``rediss://`` url with ``[redis.tls] ca``, against a redis-server started
by the test on a TLS port with a certificate from a CA made in the test; a client trusting
another CA does not use it, and says why."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from domicile.shards.cache import RedisCache
from domicile.shards.faults import Cause
from domicile.shards.placements import Placement
from domicile.shards.states import PlacementState
from tests.support.ports import free_port
from tests.support.tls import issue, make_ca

pytestmark = pytest.mark.anyio


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    ca, ca_cert, ca_key = make_ca(tmp_path, "redis-ca")
    other, _, _ = make_ca(tmp_path, "other-ca")
    cert, key = issue(ca_cert, ca_key, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "redis.crt").write_bytes(cert)
    (tmp_path / "redis.key").write_bytes(key)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "redis.crt"), "--tls-key-file",
         str(tmp_path / "redis.key"), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.skip("this redis-server has no TLS support")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port, ca, other
    finally:
        proc.kill()
        proc.wait()


async def test_rediss_with_the_right_ca(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, other = tls_redis
    placement = Placement("p" * 64, "RU", "ru-msk-1", 1, PlacementState.ACTIVE)
    trusted = RedisCache(f"rediss://127.0.0.1:{port}/0", namespace="tls", ca=ca)
    await trusted.start()
    try:
        await trusted.put(placement)
        writer_view = RedisCache(f"rediss://127.0.0.1:{port}/0", namespace="tls", ca=ca)
        assert await writer_view.get(placement.pseudonym) == placement  # read back from Redis
        await writer_view.close()
        assert trusted.fault is None
    finally:
        await trusted.close()

    untrusted = RedisCache(f"rediss://127.0.0.1:{port}/0", namespace="tls", ca=other)
    try:
        assert await untrusted.get(placement.pseudonym) is None  # served from the catalog
        assert untrusted.fault is not None
        assert untrusted.fault.cause == Cause.TLS
    finally:
        await untrusted.close()
