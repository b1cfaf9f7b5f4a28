"""Building the audit service from settings: the deployment's signing key (created 0600 on first
start) and the archive stores (an Object Lock bucket per region, or the local folder)."""

from __future__ import annotations

from pathlib import Path

from domicile.audit.archive import ArchiveStore, LocalStore, S3Store, s3_client
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
    signer = load_or_create_signer(settings.signing_key_path, key_name(settings.deployment))
    return AuditService(
        [ShardLogStore(shard) for shard in registry.all()],
        settings.deployment,
        signer,
        archive_stores(settings),
        settings.archive.bundle_size,
    )
