"""Building the audit service from settings: the deployment's signing keys (created 0600 on
first start; during a rotation the next key beside it) and the archive stores (an Object Lock
bucket per region, or the local folder)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from domicile.audit.archive import ArchiveStore, LocalStore, S3Store, s3_client
from domicile.audit.keyring import Keyring
from domicile.audit.note import Signer
from domicile.audit.service import AuditService, key_name
from domicile.router.config import Settings
from domicile.router.secrets import write_private
from domicile.shards.log_store import ShardLogStore
from domicile.shards.registry import ShardRegistry


def load_or_create_signer(path: Path, name: str) -> Signer:
    """The Ed25519 signing key at ``path`` (PKCS#8 PEM), generated on first use."""
    try:
        return Signer.from_pem(name, path.read_bytes())
    except FileNotFoundError:
        pass
    signer = Signer.generate(name)
    try:
        write_private(path, signer.private_pem())
    except FileExistsError:  # another process created it first: use theirs
        return Signer.from_pem(name, path.read_bytes())
    return signer


def next_key_path(path: Path) -> Path:
    """Where ``audit key rotate`` keeps the new key until every log holds the rotation; the
    old key file is then replaced by it."""
    return path.with_name(path.name + ".next")


def load_signers(path: Path, name: str) -> list[Signer]:
    """The current key (created on first use) and, while a rotation is under way, the next."""
    signers = [load_or_create_signer(path, name)]
    with contextlib.suppress(FileNotFoundError):
        signers.append(Signer.from_pem(name, next_key_path(path).read_bytes()))
    return signers


def key_files_stamp(path: Path) -> tuple[tuple[int, int] | None, ...]:
    """What changes when a rotation begins or ends: each key file's inode and time."""
    stamps: list[tuple[int, int] | None] = []
    for each in (path, next_key_path(path)):
        try:
            status = each.stat()
        except FileNotFoundError:
            stamps.append(None)
            continue
        stamps.append((status.st_ino, status.st_mtime_ns))
    return tuple(stamps)


def begin_rotation(path: Path, name: str) -> tuple[Signer, Signer]:
    """The current key and the next, created unless a rotation left one behind."""
    current = load_or_create_signer(path, name)
    return current, load_or_create_signer(next_key_path(path), name)


def finish_rotation(path: Path) -> None:
    """The next key becomes the key: the old one is gone from disk."""
    os.replace(next_key_path(path), path)


def archive_stores(settings: Settings) -> dict[str, ArchiveStore]:
    """Region name -> where that region's logs are archived."""
    archive = settings.archive
    if not archive.buckets:
        local = LocalStore(archive.local_dir)
        return {region: local for region in settings.topology.regions}
    client = s3_client(archive.endpoint, archive.ca_bundle)
    return {
        region: S3Store(client, bucket, settings.deployment, archive.retention_days)
        for region, bucket in archive.buckets.items()
    }


def audit_service(settings: Settings, registry: ShardRegistry) -> AuditService:
    name = key_name(settings.deployment)
    path = settings.signing_key_path
    keyring = Keyring(lambda: load_signers(path, name), lambda: key_files_stamp(path))
    return AuditService(
        [ShardLogStore(shard) for shard in registry.all()],
        settings.deployment,
        keyring,
        archive_stores(settings),
        settings.archive.bundle_size,
    )
