"""``domicile comply`` after a new localization law: the seed scenario end to end, proven by
reading every shard database directly; and two runs at once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.comply import Selection, comply
from domicile.shards.moves import Mover, subject_digest
from domicile.shards.store import content_digest, encode_data
from tests.support.api import start_api
from tests.support.cli import cli
from tests.support.deployment import Deployment, query_shard
from tests.support.shards import assert_settled, audit_events, seed, set_policy, verify_audit, views

pytestmark = [pytest.mark.anyio, pytest.mark.general_path]


async def pseudonyms_of(dep: Deployment, subjects: list[str]) -> dict[str, str]:
    async with open_runtime(dep.settings(), prepare=False) as rt:
        return {s: rt.pseudonyms.subject(s) for s in subjects}


async def test_new_law_moves_every_ru_subject_to_russia(
    law_change: tuple[Deployment, dict[str, str]],
) -> None:
    dep, ru = law_change
    ids = await pseudonyms_of(dep, [*ru, "de-0", "de-1", "us-0"])
    assert {ids[s] for s in ru} <= (await views(dep))["eu-fra-1"].home()

    # A router started under the new law reads those subjects where they are until they are
    # moved (a write would relocate one first: tests/e2e/test_relocation.py), and the EU
    # shard's own guard now refuses new RU rows.
    async for api in start_api(dep.settings()):
        read = await api.request("GET", "/v1/subjects/ivan-0/records/notes/k0")
        assert read.status_code == 200
        assert read.headers["X-Domicile-Shard"] == "eu-fra-1"
    with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError)):
        await query_shard(
            dep,
            "eu-fra-1",
            "INSERT INTO records VALUES ($1, 'notes', 'x', '{}', 1, 'RU', 'x', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            ids["ivan-0"],
        )

    dry = await cli(dep.config, "comply", "--dry-run")
    assert dry.exit_code == 1, dry.stderr
    assert "RU            eu-fra-1    ru-msk-1  12" in dry.stdout
    assert (await views(dep))["ru-msk-1"].subjects == {}  # the dry run changed nothing

    done = await cli(dep.config, "comply")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "misplaced remaining: 0" in done.stdout
    assert "moved 12 subjects (36 records)" in done.stdout

    expected = {ids[s]: ("ru-msk-1", 3) for s in ru}
    expected |= {ids["de-0"]: ("eu-fra-1", 3), ids["de-1"]: ("eu-fra-1", 3)}
    expected |= {ids["us-0"]: ("us-east-1", 3)}
    assert_settled(await views(dep), expected)
    if dep.backend == "sqlite":  # not a byte of theirs is left in the EU shard's files
        files = list(Path(dep.shard_urls["eu-fra-1"].split("///")[1]).parent.glob("eu-fra-1*"))
        blob = b"".join(f.read_bytes() for f in files)
        assert b"content-of-ivan" not in blob
        assert b"ivan-" not in blob
        assert b"content-of-de-0" in blob  # (the scan does see what is still there)

    outs = {e["subject"]: e for e in await audit_events(dep, "eu-fra-1", "subject.moved_out")}
    ins = {e["subject"]: e for e in await audit_events(dep, "ru-msk-1", "subject.moved_in")}
    assert set(outs) == set(ins) == {ids[s] for s in ru}
    async with open_runtime(dep.settings(), prepare=False) as rt:
        for subject in ru:
            out, into = outs[ids[subject]], ins[ids[subject]]
            assert (out["from_shard"], out["to_shard"]) == ("eu-fra-1", "ru-msk-1")
            assert (into["from_shard"], into["to_shard"], into["records"]) == (
                "eu-fra-1",
                "ru-msk-1",
                3,
            )
            # The digest is recomputable from what was written (and so from record.put entries).
            written = [
                (
                    rt.pseudonyms.record(subject, "notes", f"k{k}"),
                    1,
                    content_digest(encode_data({"secret": f"content-of-{subject}-{k}"})),
                )
                for k in range(3)
            ]
            assert out["digest"] == into["digest"] == subject_digest(written)

    async for api in start_api(dep.settings()):
        read = await api.request("GET", "/v1/subjects/ivan-3/records/notes/k2")
        assert read.status_code == 200
        assert read.headers["X-Domicile-Shard"] == "ru-msk-1"
        assert read.json()["data"] == {"secret": "content-of-ivan-3-2"}
        assert (await api.put("ivan-3", "notes", "after", {"y": 2})).status_code == 200

    verified = await verify_audit(dep)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    report = await cli(dep.config, "audit", "report", "--format", "json")
    assert report.exit_code == 0, report.stderr
    shards = json.loads(report.stdout)["report"]["shards"]
    assert [s["violations"] for s in shards] == [[], [], []]

    again = await cli(dep.config, "comply")
    assert again.exit_code == 0
    assert "moved 0 subjects" in again.stdout or "nothing misplaced" in again.stdout


async def test_two_comply_runs_at_once_move_each_subject_once(deployment: Deployment) -> None:
    set_policy(deployment.config, "RU", ["eu-fra"])
    ru = {f"olga-{i}": "RU" for i in range(30)}
    await seed(deployment.settings(), ru, records=2)
    set_policy(deployment.config, "RU", ["ru-msk"])
    settings = deployment.settings()

    async with open_runtime(settings) as a, open_runtime(settings) as b:
        movers = [
            Mover(rt.settings.topology, rt.registry, rt.directory, rt.move_journal, rt.pseudonyms)
            for rt in (a, b)
        ]
        reports = await asyncio.gather(
            *(comply(m, Selection(), parallel=2, batch_size=4) for m in movers)
        )
        journal = await a.move_journal.latest(unfinished_only=False, limit=1000)
        ids = {a.pseudonyms.subject(s) for s in ru}

    assert [r.remaining for r in reports] == [0, 0]
    assert sum(sum(r.moved.values()) for r in reports) == 30
    assert sorted(m.pseudonym for m in journal if m.state == "done") == sorted(ids)
    outs = await audit_events(deployment, "eu-fra-1", "subject.moved_out")
    ins = await audit_events(deployment, "ru-msk-1", "subject.moved_in")
    assert sorted(e["subject"] for e in outs) == sorted(e["subject"] for e in ins) == sorted(ids)
    assert_settled(await views(deployment), {p: ("ru-msk-1", 2) for p in ids})


async def test_comply_by_jurisdiction_and_what_cannot_be_placed(deployment: Deployment) -> None:
    set_policy(deployment.config, "RU", ["eu-fra"])
    set_policy(deployment.config, "CN", ["us-east"])
    await seed(deployment.settings(), {"ivan": "RU", "li": "CN", "wang": "CN"}, records=1)
    set_policy(deployment.config, "RU", ["ru-msk"])
    set_policy(deployment.config, "CN", [])  # nowhere is permitted any more

    only_cn = await cli(deployment.config, "comply", "--jurisdiction", "CN")
    assert only_cn.exit_code == 1  # both still misplaced: there is nowhere to put them
    assert "cannot place 2 CN subjects of us-east-1" in only_cn.stdout
    assert "moved 0 subjects" in only_cn.stdout
    assert (await views(deployment))["ru-msk-1"].subjects == {}  # RU was not touched

    bad = await cli(deployment.config, "comply", "--jurisdiction", "ru")
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1

    rest = await cli(deployment.config, "comply")
    assert rest.exit_code == 1
    assert "moved 1 subject (1 record)" in rest.stdout
    assert "misplaced remaining: 2" in rest.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_subjects_of_a_shard_removed_from_the_config_are_reported(
    deployment: Deployment,
) -> None:
    await seed(deployment.settings(), {"joe": "US"}, records=1)
    text = deployment.config.read_text()
    start = text.index("[shards.us-east-1]")
    end = text.index("[", start + 1)
    deployment.config.write_text(text[:start] + text[end:])

    dry = await cli(deployment.config, "comply", "--dry-run")
    assert dry.exit_code == 1
    assert (
        "cannot place 1 US subject of us-east-1: the shard is no longer in the configuration"
        in dry.stdout
    )
    run = await cli(deployment.config, "comply")
    assert run.exit_code == 1
    assert "misplaced remaining: 1" in run.stdout
