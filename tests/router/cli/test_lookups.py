"""``domicile lookups backfill`` builds an index from a field of existing records (resumable,
conflicts reported by pseudonym, exit 1 while any remain) and ``domicile lookups rekey``
rotates the lookup secret (every blind value recomputed, the new secret installed, resumable)."""

from __future__ import annotations

import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.errors import SubjectNotFound
from tests.support.cli import cli
from tests.support.deployment import Deployment, query_shard
from tests.support.leaks import holders_of
from tests.support.shards import ACTOR

pytestmark = pytest.mark.anyio

PROFILES = {
    "ivan": ("RU", {"email": "Ivan@Example.ru"}),
    "olga": ("RU", {"email": "olga@example.ru", "city": "Tver"}),
    "hans": ("DE", {"email": "IVAN@example.ru"}),  # Ivan's value: a conflict
    "anna": ("DE", {"email": "not an address"}),
    "tom": ("US", {"city": "Boston"}),  # no e-mail: nothing to fill
}


@pytest.fixture
async def profiles(deployment: Deployment) -> Deployment:
    async with open_runtime(deployment.settings()) as rt:
        for subject, (jurisdiction, profile) in PROFILES.items():
            await rt.store.register(subject, jurisdiction, ACTOR)
            await rt.store.put(subject, "profile", "main", profile, ACTOR)
    return deployment


async def who(dep: Deployment, kind: str, value: str) -> str | None:
    async with open_runtime(dep.settings(), prepare=False) as rt:
        try:
            return (await rt.lookups.find(kind, value)).subject_id
        except SubjectNotFound:
            return None


async def test_backfill(profiles: Deployment) -> None:
    dep = profiles
    args = ("lookups", "backfill", "--kind", "email", "--collection", "profile", "--field", "email")
    dry = await cli(dep.config, *args, "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert "4 subjects with a email: 2 to set, 0 already set, 1 conflicts, 1 invalid" in dry.stdout
    assert await who(dep, "email", "ivan@example.ru") is None  # nothing written

    first = await cli(dep.config, *args)
    assert first.exit_code == 1, first.output
    [conflict] = [line for line in first.stdout.splitlines() if line.startswith("conflict:")]
    assert "ivan" not in conflict.lower()
    assert "hans" not in conflict
    assert "eu-fra-1: 2 subjects read" in first.stderr  # progress
    assert {
        await who(dep, "email", "IVAN@example.ru"),
        await who(dep, "email", "olga@example.ru"),
    } in (
        {"ivan", "olga"},
        {"hans", "olga"},
    )

    again = await cli(dep.config, *args)  # resumable: what is in is skipped
    assert again.exit_code == 1
    assert "2 already set, 1 conflicts, 1 invalid" in again.stdout

    async with open_runtime(dep.settings()) as rt:  # the operator settles the conflict
        await rt.store.put("hans", "profile", "main", {"email": "hans@example.de"}, ACTOR)
        await rt.store.put("anna", "profile", "main", {"email": "anna@example.de"}, ACTOR)
    if await who(dep, "email", "ivan@example.ru") == "hans":  # hans won the first run
        async with open_runtime(dep.settings()) as rt:
            await rt.store.remove_lookup("hans", "email", ACTOR)
    done = await cli(dep.config, *args)
    assert done.exit_code == 0, done.output
    for value, subject in [("ivan@example.ru", "ivan"), ("hans@example.de", "hans")]:
        assert await who(dep, "email", value) == subject
    refused = await cli(dep.config, "lookups", "backfill", "--kind", "shoe", "--collection",
                        "profile", "--field", "size")  # fmt: skip
    assert refused.exit_code == 2
    assert "no lookup kind 'shoe'" in refused.stderr


async def test_rekey(profiles: Deployment) -> None:
    dep = profiles
    async with open_runtime(dep.settings()) as rt:
        await rt.store.set_lookup("ivan", "email", "ivan@example.ru", ACTOR)
        await rt.store.set_lookup("hans", "username", "Hans", ACTOR)
        old = rt.store.lookup_keys.blind("email", "ivan@example.ru")
    key_file = dep.data_dir / "lookup.key"
    before = key_file.read_text()

    rotated = await cli(dep.config, "lookups", "rekey")
    assert rotated.exit_code == 0, rotated.output
    assert "re-keyed 2 lookup keys" in rotated.stdout
    assert key_file.read_text() != before
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not (dep.data_dir / "lookup.key.new").exists()
    left = await holders_of(dep, old.encode())  # in the log's history only, not the catalog
    assert {db for db, _ in left} == {"ru-msk-1"}
    assert all(table.startswith("audit_") for _, table in left)
    assert await who(dep, "email", "Ivan@example.ru") == "ivan"
    assert await who(dep, "username", "HANS") == "hans"
    rows = await query_shard(dep, "eu-fra-1", "SELECT count(*) FROM lookups")
    assert rows == [(1,)]
    again = await cli(dep.config, "lookups", "rekey")
    assert "re-keyed 2 lookup keys" in again.stdout  # a new secret each time
    assert await who(dep, "email", "ivan@example.ru") == "ivan"
