"""Placement rule 8 and rules that take effect later: a write to a subject whose home the rule
in effect no longer permits moves the subject first and then applies (never 409); a scheduled
rule keeps writes at the old home until its time and places new subjects by the new rule."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.schema_runner import SHARD_HISTORY
from domicile.shards.states import MoveState
from tests.support.api import start_api
from tests.support.cli import cli
from tests.support.deployment import Deployment, migrated_template, query_shard
from tests.support.shards import ACTOR, audit_events, seed, set_policy, views

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]


async def pseudonym_of(dep: Deployment, subject: str) -> str:
    async with open_runtime(dep.settings(), prepare=False) as rt:
        return rt.pseudonyms.subject(subject)


def eu_files_hold(dep: Deployment, needle: bytes) -> bool:
    folder = Path(dep.shard_urls["eu-fra-1"].split("///")[1]).parent
    return needle in b"".join(f.read_bytes() for f in folder.glob("eu-fra-1*"))


async def test_a_write_relocates_a_misplaced_subject_first(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    dep, ru = law_change
    ivan, other = await pseudonym_of(dep, "ivan-0"), await pseudonym_of(dep, "ivan-1")
    async for api in start_api(dep.settings()):
        written = await api.put("ivan-0", "notes", "late", {"secret": "written-after-the-law"})
        assert written.status_code == 200, written.text
        assert written.headers["X-Domicile-Shard"] == "ru-msk-1"
        read = await api.request("GET", "/v1/subjects/ivan-0/records/notes/k0")
        assert read.headers["X-Domicile-Shard"] == "ru-msk-1"
        assert read.json()["data"] == {"secret": "content-of-ivan-0-0"}
        # Nobody wrote to the others: they stay until comply, served where they are.
        untouched = await api.request("GET", "/v1/subjects/ivan-1/records/notes/k0")
        assert untouched.headers["X-Domicile-Shard"] == "eu-fra-1"
        metrics = (await api.client.get("/metrics")).text
        assert "domicile_relocations_seconds_count 1.0" in metrics

    shards = await views(dep)
    assert ivan in shards["ru-msk-1"].home()
    assert ivan not in shards["eu-fra-1"].home()
    assert other in shards["eu-fra-1"].home()
    if dep.backend == "sqlite":  # the data is only in Russia now
        assert not eu_files_hold(dep, b"content-of-ivan-0")
        assert eu_files_hold(dep, b"content-of-ivan-1")
    moved_in = [e for e in await audit_events(dep, "ru-msk-1", "subject.moved_in")]
    assert [e["subject"] for e in moved_in] == [ivan]
    async with open_runtime(dep.settings(), prepare=False) as rt:
        [move] = await rt.move_journal.latest(unfinished_only=False)
    assert (move.reason, move.state, move.records) == ("write", MoveState.DONE, 3)

    # comply moves the rest, and not ivan-0 a second time.
    done = await cli(dep.config, "comply")
    assert done.exit_code == 0, done.output
    assert f"moved {len(ru) - 1} subjects" in done.stdout


async def test_a_write_whose_subject_comply_moves_meanwhile_lands_at_the_new_home(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    """The write read the old home from the catalog; comply switches the subject before the
    write's relocation starts: the write is applied at the new home, not refused."""
    dep, _ = law_change
    async with open_runtime(dep.settings()) as rt:
        relocator = rt.store.relocator
        assert relocator is not None
        relocate = relocator._move_now

        async def comply_first(subject_id: str, target: str) -> tuple[MoveState, str | None]:
            async with open_runtime(dep.settings()) as other:
                assert other.store.relocator is not None
                await other.store.relocator._move_now(subject_id, target)
            return await relocate(subject_id, target)

        relocator._move_now = comply_first
        written = await rt.store.put("ivan-0", "notes", "late", {"raced": True}, ACTOR)
        assert (written.shard, written.version) == ("ru-msk-1", 1)
        assert (await rt.store.get("ivan-0", "notes", "late")).data == b'{"raced":true}'


def schedule(config: Path, effective: datetime) -> None:
    """policy.RU becomes "Russia from ``effective``, the EU region until then"."""
    text, n = re.subn(
        r'\[policy\.RU\]\nstore_in = \["ru-msk"\]',
        f'[policy.RU]\nstore_in = ["ru-msk"]\neffective = "{effective.isoformat()}"\n'
        'before = ["eu-fra"]',
        config.read_text(),
    )
    assert n == 1
    config.write_text(text)


async def test_a_scheduled_rule_moves_nobody_until_its_time(deployment: Deployment) -> None:
    dep = deployment
    set_policy(dep.config, "RU", ["eu-fra"])
    await seed(dep.settings(), {"ivan-0": "RU", "ivan-1": "RU", "hans": "DE"})
    set_policy(dep.config, "RU", ["ru-msk"])
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    schedule(dep.config, effective)

    async for api in start_api(dep.settings()):
        # Before the time: writes stay at the old home, new subjects go by the new rule.
        early = await api.put("ivan-0", "notes", "early", {"v": 1})
        assert early.status_code == 200, early.text
        assert early.headers["X-Domicile-Shard"] == "eu-fra-1"
        boris = await api.register("boris", "RU")
        assert boris.json()["shard"] == "ru-msk-1"
        status = await cli(dep.config, "shards", "status")
        assert (
            f"policy.RU: ru-msk from {effective.isoformat()} (until then also eu-fra); "
            "2 subjects still to move"
        ) in status.stdout
        report = (await api.request("GET", "/v1/audit/report")).json()
        assert report["report"]["policy"]["RU"]["before"] == ["eu-fra"]

        await asyncio.sleep(max(0.0, (effective - datetime.now(UTC)).total_seconds()) + 0.5)
        # From the time on: a write relocates first.
        late = await api.put("ivan-0", "notes", "late", {"v": 2})
        assert late.status_code == 200, late.text
        assert late.headers["X-Domicile-Shard"] == "ru-msk-1"
        # The EU shard's own guard follows the rule now in effect (synced on its next write).
        assert (await api.put("hans", "notes", "x", {"v": 1})).status_code == 200
    with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError)):
        await query_shard(
            dep,
            "eu-fra-1",
            "INSERT INTO records VALUES ($1, 'notes', 'x', '{}', 1, 'RU', 'x', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            await pseudonym_of(dep, "ivan-1"),
        )


def damage(path: Path) -> None:
    path.write_bytes(b"not a database" * 100)


async def test_a_relocation_that_cannot_be_made_now_is_retryable(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    dep, _ = law_change
    if dep.backend != "sqlite":
        pytest.skip("breaks the target by damaging its SQLite file")
    target = Path(dep.shard_urls["ru-msk-1"].split("///")[1])
    damage(target)
    async for api in start_api(dep.settings()):
        deferred = await api.put("ivan-0", "notes", "late", {"v": 1})
        assert deferred.status_code == 503, deferred.text
        assert deferred.json()["error"]["code"] in ("relocation_deferred", "shard_damaged")
        assert deferred.headers["retry-after"].isdigit()
        assert (await api.request("GET", "/v1/subjects/ivan-0/records/notes/k0")).is_success

        shutil.copyfile(await migrated_template("sqlite", SHARD_HISTORY), target)
        for _ in range(40):
            retried = await api.put("ivan-0", "notes", "late", {"v": 1})
            if retried.status_code == 200:
                break
            assert retried.status_code == 503, retried.text
            await asyncio.sleep(0.25)
        assert retried.status_code == 200, retried.text
        assert retried.headers["X-Domicile-Shard"] == "ru-msk-1"
    assert await pseudonym_of(dep, "ivan-0") in (await views(dep))["ru-msk-1"].home()
