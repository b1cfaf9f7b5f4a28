"""Transport security toward a database: what ``[shards.<name>.tls]`` and ``[catalog.tls]``
say, and the ``ssl.SSLContext`` handed to the driver.

``verify-full`` (encrypted; certificate chain and host name checked) is the default for a host
outside the loopback range: the connection from a router to a shard abroad carries citizens'
records over networks nobody in the company controls. On the loopback (or a Unix socket)
nothing is in the path, and the default is ``disable``."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class TlsMode(StrEnum):
    VERIFY_FULL = "verify-full"
    REQUIRE = "require"
    DISABLE = "disable"


@dataclass(frozen=True)
class Tls:
    mode: TlsMode | None = None  # None: by the host (see the module)
    ca: Path | None = None  # PEM file of trusted CAs; None: the system's
    cert: Path | None = None  # a client certificate, with its key
    key: Path | None = None

    def mode_for(self, host: str | None) -> TlsMode:
        if self.mode is not None:
            return self.mode
        return TlsMode.DISABLE if is_loopback(host) else TlsMode.VERIFY_FULL


#: No ``[tls]`` section: the mode by the host, the system's CAs.
BY_HOST = Tls()


def is_loopback(host: str | None) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True  # no host: a Unix socket
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_context(tls: Tls, host: str | None) -> ssl.SSLContext | bool:
    """What the driver's ``ssl`` argument gets: a context, or False for no TLS."""
    mode = tls.mode_for(host)
    if mode == TlsMode.DISABLE:
        return False
    if mode == TlsMode.VERIFY_FULL:
        context = ssl.create_default_context(cafile=None if tls.ca is None else str(tls.ca))
    else:  # encrypted, unverified: anyone in the path can present a certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        context.load_cert_chain(str(tls.cert), None if tls.key is None else str(tls.key))
    return context
