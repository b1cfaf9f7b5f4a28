"""Deployment secrets kept as files in the data dir: created once, readable by the owner only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from domicile.shards.files import private_dir


def write_private(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600; refuse to overwrite an existing file."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def load_or_create_key(path: Path, size: int = 32) -> bytes:
    """The random key stored at ``path``, generated on first use."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(size)
    try:
        write_private(path, key.hex().encode() + b"\n")
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    return key
