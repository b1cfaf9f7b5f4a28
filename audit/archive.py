"""The archive: closed ranges of each log's entries, with the checkpoint that covers them, copied
to write-once storage in the log's own region (an S3 bucket under Object Lock in COMPLIANCE mode,
or a local folder in the embedded default).

Layout under the archive root, one folder per log::

    <log>/entries/<start>-<end>.jsonl   leaves [start, end), exact bytes, one per line
    <log>/checkpoints/<end>             the signed checkpoint of the tree of size <end>

Numbers are zero-padded to 20 digits, so names sort in log order. RFC 8785 output escapes every
control character, so a leaf never contains a raw newline. A checkpoint is written after its
bundle: its presence marks the bundle complete. The database stays authoritative; archiving
only copies, so a failed run loses nothing and the next one resumes where the archive ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from domicile.audit.errors import ArchiveConflict, ArchiveError
from domicile.audit.store import IssuedCheckpoint, LogStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("domicile.audit")

ENTRIES, CHECKPOINTS = "entries", "checkpoints"


def bundle_key(name: str, start: int, end: int) -> str:
    return f"{name}/{ENTRIES}/{start:020d}-{end:020d}.jsonl"


def checkpoint_key(name: str, size: int) -> str:
    return f"{name}/{CHECKPOINTS}/{size:020d}"


def parse_bundle_key(key: str) -> tuple[int, int]:
    """``…/<start>-<end>.jsonl`` -> (start, end)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
    start, _, end = stem.partition("-")
    if not (start.isdigit() and end.isdigit()) or int(end) <= int(start):
        raise ArchiveError(f"malformed archive bundle name {key!r}")
    return int(start), int(end)


def split_leaves(bundle: bytes) -> list[bytes]:
    return bundle.removesuffix(b"\n").split(b"\n") if bundle else []


class ArchiveStore(Protocol):
    """Write-once object storage, addressed by ``/``-separated keys under one root."""

    location: str

    def logs(self) -> list[str]:
        """The top-level folders (one per log)."""

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` immutably; a no-op when the same bytes are already there."""


class LocalStore:
    """A folder; archived files are made read-only (a courtesy: only S3 Object Lock enforces)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def logs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CHECKPOINTS).is_dir())

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        # Dot files are writes a crash interrupted: never part of the archive.
        return sorted(
            f"{prefix.rstrip('/')}/{p.name}"
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        if path.exists():
            if path.read_bytes() != data:
                raise ArchiveConflict(self.location, key)
            return
        _private_dirs(path.parent)
        partial = path.with_name(f".{path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner only
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(partial, path)


def _private_dirs(path: Path) -> None:
    """``path`` and its missing parents, each created owner-only (``mkdir -p`` would give the
    parents the umask's mode)."""
    if not path.exists():
        _private_dirs(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)


class S3Store:
    """An S3 bucket (and key prefix). Writes carry COMPLIANCE-mode retention of
    ``retention_days``; the bucket must have Object Lock enabled, or nothing is written."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", retention_days: int | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.retention_days = retention_days
        self.location = f"s3://{bucket}/{self.prefix}"
        self._lock_checked = False

    def logs(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        found = [
            common["Prefix"][len(self.prefix) :].rstrip("/")
            for page in pages
            for common in page.get("CommonPrefixes", [])
        ]
        return sorted(found)

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        return sorted(
            obj["Key"][len(self.prefix) :] for page in pages for obj in page.get("Contents", [])
        )

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def _check_lock(self) -> None:
        from botocore.exceptions import ClientError

        if self._lock_checked:
            return
        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise
            enabled = None
        if enabled != "Enabled":
            raise ArchiveError(f"bucket {self.bucket} does not have Object Lock enabled")
        self._lock_checked = True

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        if self.retention_days is None:
            raise ArchiveError(f"{self.location} is opened for reading only")
        self._check_lock()
        digest = hashlib.sha256(data).hexdigest()
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            if head.get("Metadata", {}).get("sha256") != digest:
                raise ArchiveConflict(self.location, key)
            return
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + key,
            Body=data,
            ContentType="text/plain; charset=utf-8",
            Metadata={"sha256": digest},
            ChecksumAlgorithm="SHA256",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=self.retention_days),
        )


def s3_client(endpoint: str | None, ca_bundle: Path | None = None) -> S3Client:
    """A client with short timeouts: an S3 outage must fail a run quickly, not hang it.
    Credentials come from the usual AWS sources (environment, profile, instance role); an
    https endpoint's certificate is checked against ``ca_bundle`` (else the system's CAs)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=15, retries={"max_attempts": 2})
    verify = str(ca_bundle) if ca_bundle is not None else None
    return boto3.client("s3", endpoint_url=endpoint, config=config, verify=verify)


def archived_size(store: ArchiveStore, name: str) -> int:
    """How far the archive of log ``name`` reaches: its largest checkpoint."""
    sizes = [int(key.rsplit("/", 1)[-1]) for key in store.keys(f"{name}/{CHECKPOINTS}/")]
    return max(sizes, default=0)


@dataclass(frozen=True)
class ArchiveTarget:
    log: LogStore
    store: ArchiveStore


Issue = Callable[[LogStore, int], Awaitable[IssuedCheckpoint]]
"""Signs (or finds) the checkpoint of a log's tree at a size: the audit service's ``issue``."""


class Archiver:
    """Copies each log's closed bundles of ``bundle_size`` entries, incrementally."""

    def __init__(
        self, targets: Mapping[str, ArchiveTarget], issue: Issue, bundle_size: int
    ) -> None:
        self.targets = dict(targets)
        self.issue = issue
        self.bundle_size = bundle_size
        self._archived: dict[str, int] = {}

    async def archive(self, name: str) -> int:
        """Archive every closed bundle of log ``name``; returns the archived size."""
        target = self.targets[name]
        done = self._archived.get(name)
        if done is None:
            done = await asyncio.to_thread(archived_size, target.store, name)
        size = await target.log.integrate()
        while size - done >= self.bundle_size:
            end = done + self.bundle_size
            entries = await target.log.entries(done, end)
            if [e.index for e in entries] != list(range(done, end)):
                raise ArchiveError(f"log {name}: entries {done}..{end - 1} are not all stored")
            checkpoint = await self.issue(target.log, end)
            body = b"".join(entry.leaf + b"\n" for entry in entries)
            await asyncio.to_thread(target.store.write, bundle_key(name, done, end), body)
            await asyncio.to_thread(
                target.store.write, checkpoint_key(name, end), checkpoint.note.encode()
            )
            done = self._archived[name] = end
        return done

    async def sign_bundles(self, name: str, size: int) -> None:
        """Checkpoint the end of every bundle closed at ``size`` that has no checkpoint yet:
        done before a key rotation, after which no key held could sign them."""
        target = self.targets[name]
        for end in range(self.bundle_size, size + 1, self.bundle_size):
            if await target.log.checkpoint_at(end) is None:
                await self.issue(target.log, end)

    async def archive_all(self) -> dict[str, int | Exception]:
        """Archive every log; a log that fails (S3 down, shard down) is retried next time."""
        results: dict[str, int | Exception] = {}
        for name in self.targets:
            try:
                results[name] = await self.archive(name)
            except Exception as exc:  # one log's outage must not stop the others
                log.warning("archiving log %s failed, will retry: %s", name, exc)
                results[name] = exc
        return results
