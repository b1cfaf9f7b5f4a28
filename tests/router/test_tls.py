"""Verified TLS to a shard: a PostgreSQL started by the test with ``ssl = on`` and a CA made in
the test. ``verify-full`` with the right CA works end to end; another CA, a certificate for
another host name and a server without TLS are each refused with one line naming the cause,
while the router serves the other shards; TLS options in a url and an unknown mode are
configuration errors."""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from domicile.router.config import load_settings
from domicile.router.errors import ConfigError
from domicile.shards.engines import create_engine
from domicile.shards.schema_runner import SHARD_HISTORY, migrate
from domicile.shards.tls import Tls, TlsMode
from tests.support.api import start_api
from tests.support.deployment import create_databases, drop_databases, make_deployment, pg_url
from tests.support.pgcluster import Cluster
from tests.support.tls import issue, make_ca

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[Cluster, Path, Path]]:
    """A PostgreSQL with ``ssl = on``, its certificate for 127.0.0.1 only; the CA that signed it
    and another CA."""
    root = Path(tempfile.mkdtemp(prefix="domicile-pg-tls-"))
    pg = Cluster(root)
    pg.init()
    ca, ca_cert, ca_key = make_ca(root, "domicile-test-ca")
    other_ca, _, _ = make_ca(root, "another-ca")
    cert, key = issue(ca_cert, ca_key, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (pg.data / "server.crt").write_bytes(cert)
    (pg.data / "server.key").write_bytes(key)
    (pg.data / "server.key").chmod(0o600)
    for name in ("server.crt", "server.key"):
        shutil.chown(pg.data / name, "postgres", "postgres")
    with (pg.data / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    pg.start()
    yield pg, ca, other_ca
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


async def _migrated_shard(port: int) -> str:
    await create_databases(["us_east_1"], port=port)
    url = pg_url("us_east_1", port=port)
    engine = create_engine(url, tls=Tls(TlsMode.REQUIRE))
    await migrate(engine, SHARD_HISTORY, "upgrade", "head")
    await engine.dispose()
    return url


def _with_tls(config: Path, mode: str, ca: Path | None) -> None:
    section = f'\n[shards.us-east-1.tls]\nmode = "{mode}"\n' + (f'ca = "{ca}"\n' if ca else "")
    config.write_text(config.read_text() + section)


@pytest.mark.parametrize(
    ("case", "code_or_none", "detail"),
    [
        ("the right CA", None, ""),
        ("another CA", "shard_tls", "untrusted certificate: its CA is not in the [tls] ca file"),
        ("another host name", "shard_tls", "its certificate is for another host name"),
        ("a server without TLS", "shard_tls", "the server does not offer TLS"),
    ],
)
async def test_verify_full(
    tmp_path: Path,
    tls_cluster: tuple[Cluster, Path, Path],
    case: str,
    code_or_none: str | None,
    detail: str,
) -> None:
    pg, ca, other_ca = tls_cluster
    url = (await _migrated_shard(pg.port)) if case != "a server without TLS" else ""
    if case == "another host name":
        url = url.replace("127.0.0.1", "localhost")
    if case == "a server without TLS":
        url = pg_url(f"dom_tls_{tmp_path.name[-8:]}")  # the suite's own server, without TLS
    dep = await make_deployment(tmp_path, "sqlite", urls={"us-east-1": url})
    _with_tls(dep.config, "verify-full", other_ca if case == "another CA" else ca)
    try:
        async for api in start_api(dep.settings()):
            us = await api.register("ann", "US")
            assert (await api.register("hans", "DE")).status_code == 201  # others served
            if code_or_none is None:
                assert us.status_code == 201, us.text
                assert (await api.put("ann", "p", "k", {"v": 1})).status_code == 200
                continue
            assert us.status_code == 503, us.text
            error = us.json()["error"]
            assert error["code"] == code_or_none
            assert error["message"].startswith("shard us-east-1 failed the TLS check")
            assert error["message"].endswith(f"({detail})")
    finally:
        await drop_databases(["us_east_1"], port=pg.port)


def test_tls_options_in_a_url_are_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "domicile.toml"
    base = (
        '[regions.us]\ncountry = "US"\n[policy.default]\nstore_in = ["us"]\n'
        '[shards.us-1]\nregion = "us"\n'
    )
    config.write_text(
        base + 'url = "postgresql+asyncpg://db.example/x?ssl=verify-full&sslrootcert=ca.pem"\n'
    )
    with pytest.raises(ConfigError, match=r"shards.us-1.url: ssl, sslrootcert belong in"):
        load_settings(config)
    config.write_text(
        base + 'url = "postgresql+asyncpg://db.example/x"\n[shards.us-1.tls]\nmode = "maybe"\n'
    )
    with pytest.raises(ConfigError, match=r"shards.us-1.tls.mode"):
        load_settings(config)
