"""The archive: closed bundles with their checkpoints, incremental and idempotent, to a local
folder or to S3 under Object Lock (a real SeaweedFS), verifiable with nothing but the key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import boto3
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_s3 import S3Client

from domicile.audit.checkpoint import open_checkpoint
from domicile.audit.note import Verifier
from domicile.router.config import load_settings
from domicile.router.errors import ConfigError
from tests.support.api import Api, start_api, write_some
from tests.support.cli import invoke
from tests.support.deployment import (
    SHARDS,
    Deployment,
    drop_databases,
    make_deployment,
    topology_toml,
)
from tests.support.s3 import S3Server

# One worker runs every S3 test, so its session starts one SeaweedFS for them all.
pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("s3")]

REGIONS = ("ru-msk", "eu-fra", "us-east")


def s3_extra(endpoint: str, buckets: dict[str, str]) -> str:
    lines = [f'endpoint = "{endpoint}"', "retention_days = 1", "bundle_size = 4"]
    lines.append("[audit.archive.buckets]")
    lines += [f'{region} = "{bucket}"' for region, bucket in buckets.items()]
    return "[audit.archive]\n" + "\n".join(lines)


@pytest.fixture
async def deployments(tmp_path: Path) -> AsyncIterator[list[Deployment]]:
    """Deployments a test makes with its own config; their databases are dropped after."""
    made: list[Deployment] = []
    yield made
    for dep in made:
        if dep.databases:
            await drop_databases(dep.databases)


async def deploy(made: list[Deployment], tmp_path: Path, backend: str, extra: str) -> Deployment:
    dep = await make_deployment(tmp_path, backend, extra)
    made.append(dep)
    return dep


async def fill(dep: Deployment) -> str:
    """Ten entries on ru-msk-1 (two closed bundles of 4), four on eu-fra-1 (one), each log's
    first being its policy.changed entry; returns the verifier key."""
    async with aclosing(cast(AsyncGenerator[Api], start_api(dep.settings()))) as apis:
        api = await anext(apis)
        await write_some(api, {"ivan": "RU", "olga": "RU", "hans": "DE"}, records=2)
        for n in range(3):
            await api.put("ivan", "more", f"m{n}", {"n": n})
        return (await api.client.get("/v1/audit/key")).text.strip()


async def test_local_archive(deployments: list[Deployment], tmp_path: Path, backend: str) -> None:
    dep = await deploy(deployments, tmp_path, backend, "[audit.archive]\nbundle_size = 4")
    key = await fill(dep)
    archive = dep.data_dir / "archive"

    first = await invoke("audit", "archive", "--config", dep.config)
    assert first.exit_code == 0, first.output
    assert "ru-msk-1: 8 entries archived" in first.stdout
    assert "eu-fra-1: 4 entries archived" in first.stdout
    bundles = sorted(p.name for p in (archive / "ru-msk-1" / "entries").iterdir())
    assert bundles == [
        f"{0:020d}-{4:020d}.jsonl",
        f"{4:020d}-{8:020d}.jsonl",
    ]
    assert sorted(p.name for p in (archive / "ru-msk-1" / "checkpoints").iterdir()) == [
        f"{4:020d}",
        f"{8:020d}",
    ]
    bundle = archive / "ru-msk-1" / "entries" / bundles[0]
    assert bundle.stat().st_mode & 0o777 == 0o600  # private (immutability is S3 Object Lock's)
    assert len(bundle.read_bytes().splitlines()) == 4

    again = await invoke("audit", "archive", "--config", dep.config)
    assert again.exit_code == 0
    assert again.stdout == first.stdout

    verified = await invoke("audit", "verify", "--archive", archive, "--key", key, "--no-state")
    assert verified.exit_code == 0, verified.output
    assert "ru-msk-1: ok, 8 entries" in verified.stdout

    bundle.chmod(0o644)
    lines = bundle.read_bytes().splitlines(keepends=True)
    bundle.write_bytes(lines[0] + lines[2] + lines[1] + lines[3])
    tampered = await invoke("audit", "verify", "--archive", archive, "--key", key, "--no-state")
    assert tampered.exit_code == 1
    assert "log ru-msk-1, entry 0: entries 0..3 do not match" in tampered.stderr


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Client:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=s3_server.endpoint)


def make_buckets(s3: S3Client) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    buckets = {region: f"domicile-{region}-{suffix}" for region in REGIONS}
    for bucket in buckets.values():
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return buckets


@pytest.mark.s3
async def test_s3_archive_is_locked_and_verifies(
    deployments: list[Deployment], tmp_path: Path, backend: str, s3: S3Client, s3_server: S3Server
) -> None:
    buckets = make_buckets(s3)
    dep = await deploy(deployments, tmp_path, backend, s3_extra(s3_server.endpoint, buckets))
    key = await fill(dep)

    result = await invoke("audit", "archive", "--config", dep.config)
    assert result.exit_code == 0, result.output
    assert "ru-msk-1: 8 entries archived in s3://" in result.stdout

    ru = buckets["ru-msk"]
    listed = s3.list_object_versions(Bucket=ru, Prefix="test/ru-msk-1/")["Versions"]
    assert sorted(v["Key"] for v in listed) == [
        f"test/ru-msk-1/checkpoints/{4:020d}",
        f"test/ru-msk-1/checkpoints/{8:020d}",
        f"test/ru-msk-1/entries/{0:020d}-{4:020d}.jsonl",
        f"test/ru-msk-1/entries/{4:020d}-{8:020d}.jsonl",
    ]
    # Each log's bundles went to its own region's bucket only.
    assert "Contents" not in s3.list_objects_v2(Bucket=buckets["us-east"], Prefix="test/ru-msk-1/")
    head = s3.head_object(Bucket=ru, Key=listed[0]["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retain = head["ObjectLockRetainUntilDate"]
    assert timedelta(hours=23) < retain - datetime.now(UTC) <= timedelta(days=1)
    for version in listed:
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=ru, Key=version["Key"], VersionId=version["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"

    again = await invoke("audit", "archive", "--config", dep.config)
    assert again.exit_code == 0
    assert len(s3.list_object_versions(Bucket=ru, Prefix="test/")["Versions"]) == len(listed)

    verified = await invoke(
        "audit",
        "verify",
        "--archive",
        f"s3://{ru}/test",
        "--endpoint-url",
        s3_server.endpoint,
        "--key",
        key,
        "--no-state",
    )
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("ru-msk-1: ok, 8 entries")


@pytest.mark.s3
async def test_archiving_survives_s3_being_down(
    deployments: list[Deployment], tmp_path: Path, backend: str, s3: S3Client, s3_server: S3Server
) -> None:
    buckets = make_buckets(s3)
    dep = await deploy(deployments, tmp_path, backend, s3_extra("http://127.0.0.1:9", buckets))
    await fill(dep)

    down = await invoke("audit", "archive", "--config", dep.config)
    assert down.exit_code == 1
    assert "ru-msk-1: archiving failed" in down.stderr

    dep.config.write_text(dep.config.read_text().replace("http://127.0.0.1:9", s3_server.endpoint))
    up = await invoke("audit", "archive", "--config", dep.config)
    assert up.exit_code == 0, up.output
    assert "ru-msk-1: 8 entries archived" in up.stdout


@pytest.mark.s3
async def test_bucket_without_object_lock_is_refused(
    deployments: list[Deployment], tmp_path: Path, s3: S3Client, s3_server: S3Server
) -> None:
    buckets = {region: f"domicile-plain-{region}-{uuid.uuid4().hex[:8]}" for region in REGIONS}
    for bucket in buckets.values():
        s3.create_bucket(Bucket=bucket)
    dep = await deploy(deployments, tmp_path, "sqlite", s3_extra(s3_server.endpoint, buckets))
    await fill(dep)
    result = await invoke("audit", "archive", "--config", dep.config)
    assert result.exit_code == 1
    assert "does not have Object Lock enabled" in result.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=buckets["ru-msk"])


def test_every_region_needs_a_bucket(tmp_path: Path) -> None:
    config = tmp_path / "domicile.toml"
    config.write_text(
        topology_toml(
            {shard: f"sqlite+aiosqlite:///{tmp_path}/{shard}.sqlite" for shard in SHARDS},
            f"sqlite+aiosqlite:///{tmp_path}/catalog.sqlite",
            s3_extra("http://127.0.0.1:8333", {"ru-msk": "only-ru"}),
        )
    )
    with pytest.raises(ConfigError, match=r"region 'eu-fra' .* has no bucket"):
        load_settings(config)


@pytest.mark.s3
async def test_s3_archive_follows_a_key_rotation(
    deployments: list[Deployment], tmp_path: Path, backend: str, s3: S3Client, s3_server: S3Server
) -> None:
    """Bundles closed before a rotation are archived with checkpoints of the old key, later ones
    with the new; the first key verifies the whole S3 prefix."""
    buckets = make_buckets(s3)
    dep = await deploy(deployments, tmp_path, backend, s3_extra(s3_server.endpoint, buckets))
    first = Verifier.parse(await fill(dep))  # nine entries on ru-msk-1
    rotated = await invoke("audit", "key", "rotate", "--config", dep.config)
    assert rotated.exit_code == 0, rotated.output
    second = Verifier.parse(rotated.stdout.splitlines()[-1])  # the rotation is entry 9
    async with aclosing(cast(AsyncGenerator[Api], start_api(dep.settings()))) as apis:
        api = await anext(apis)
        for n in range(4):
            assert (await api.put("ivan", "later", f"l{n}", {"n": n})).status_code == 200
    assert (await invoke("audit", "archive", "--config", dep.config)).exit_code == 0

    ru = buckets["ru-msk"]
    for size, key in ((4, first), (8, first), (12, second)):
        note = s3.get_object(Bucket=ru, Key=f"test/ru-msk-1/checkpoints/{size:020d}")["Body"]
        assert open_checkpoint(note.read().decode(), [key]).size == size
    args = ("--endpoint-url", s3_server.endpoint, "--no-state", "--key", first.vkey)
    verified = await invoke("audit", "verify", "--archive", f"s3://{ru}/test", *args)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("ru-msk-1: ok, 12 entries")
