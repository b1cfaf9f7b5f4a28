"""``domicile import``: an existing user base bulk-loaded from JSON Lines, proven by reading every
shard database directly: rows on the shard the policy permits, audit entries that verify, bad
lines rejected by number while the rest imports, a re-run after kill -9 that completes with
nothing twice, the shards' own guards, stdin and exit codes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from domicile.audit.events import Actor
from domicile.router.runtime import open_runtime
from domicile.shards.engines import create_engine
from domicile.shards.errors import SubjectNotFound
from domicile.shards.guard import sync_guard
from domicile.shards.importer import Importer, Rejection
from domicile.shards.pseudonym import Pseudonymizer
from domicile.shards.states import PlacementState
from tests.support.cli import cli, spawn
from tests.support.deployment import Deployment, query_shard
from tests.support.shards import (
    ACTOR,
    SHARD_NAMES,
    audit_events,
    set_policy,
    verify_audit,
    views,
)

pytestmark = pytest.mark.anyio

SECRET = "very-secret-content"


def subject_line(subject_id: str, jurisdiction: str, records: int = 2, **extra: Any) -> str:
    return json.dumps(
        {
            "subject_id": subject_id,
            "jurisdiction": jurisdiction,
            "records": [
                {"collection": "profile", "key": f"k{n}", "data": {"v": f"{SECRET}-{n}"}}
                for n in range(records)
            ],
            **extra,
        }
    )


def pseudonyms(dep: Deployment) -> Pseudonymizer:
    return Pseudonymizer(bytes.fromhex((dep.data_dir / "pseudonym.key").read_text()))


async def records_of(dep: Deployment, shard: str) -> dict[tuple[str, str], tuple[int, str]]:
    rows = await query_shard(dep, shard, "SELECT pseudonym, key, version, data FROM records")
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def entry_counts(dep: Deployment) -> Counter[tuple[str, str, str | None]]:
    """(shard, event, record or subject pseudonym) of every entry of every log."""
    counts: Counter[tuple[str, str, str | None]] = Counter()
    for shard in SHARD_NAMES:
        for event in ("subject.registered", "record.put"):
            for e in await audit_events(dep, shard, event):
                counts[(shard, event, e.get("record", e["subject"]))] += 1
    return counts


async def test_import_places_every_subject_and_rejects_bad_lines(
    deployment: Deployment, tmp_path: Path
) -> None:
    lines = [
        subject_line("ivan", "RU"),
        subject_line("anna", "DE", records=3),
        "{not json",
        subject_line("li", "CN"),
        subject_line("bob", "XX"),
        subject_line("marie", "FR"),
        json.dumps({"subject_id": "carl", "jurisdiction": "US", "records": [{"key": "x"}]}),
        subject_line("dave", "US", lookups={"email": "dave@example.com"}),
        "",
        subject_line("erin", "US", records=0, lookups={}),
    ]
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"

    result = await cli(deployment.config, "import", str(source), "--rejects", str(rejects))
    assert result.exit_code == 1, result.output
    refused = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["code"]) for r in refused] == [
        (3, "malformed_json"),
        (4, "no_permitted_region"),
        (5, "invalid_jurisdiction"),
        (7, "invalid_record"),
        (8, "lookups_unsupported"),
    ]
    assert all(set(r) == {"line", "code", "message"} for r in refused)
    assert "imported 4 subjects (4 new) and 7 records (7 written, 0 unchanged)" in result.stderr
    assert "rejected 5 of 9 lines" in result.stderr
    assert "  line 4: no_permitted_region: " in result.stderr
    for output in (rejects.read_text(), result.stderr, result.stdout):
        for raw in (SECRET, "dave@example.com", "carl", "XX", "ivan"):
            assert raw not in output

    ids = pseudonyms(deployment)
    expected = {"ivan": "ru-msk-1", "anna": "eu-fra-1", "marie": "eu-fra-1", "erin": "us-east-1"}
    shards = await views(deployment)
    for subject, home in expected.items():
        for shard, view in shards.items():
            held = view.subjects.get(ids.subject(subject))
            assert (held is not None) == (shard == home), (subject, shard)
    assert {s for view in shards.values() for _, s, _ in view.subjects.values()} == set(expected)
    stored = await records_of(deployment, "eu-fra-1")
    assert stored[(ids.subject("anna"), "k2")] == (
        1,
        json.dumps({"v": f"{SECRET}-2"}, separators=(",", ":")),
    )
    assert len(stored) == 5
    async with open_runtime(deployment.settings()) as rt:
        placement = await rt.store.placement("marie")
        assert (placement.shard, placement.jurisdiction) == ("eu-fra-1", "FR")
        assert (await rt.store.get("ivan", "profile", "k1")).version == 1
        with pytest.raises(SubjectNotFound):
            await rt.store.placement("dave")  # nothing of a rejected line is stored

    entries = await entry_counts(deployment)
    assert entries[("ru-msk-1", "subject.registered", ids.subject("ivan"))] == 1
    assert entries[("eu-fra-1", "record.put", ids.record("anna", "profile", "k2"))] == 1
    assert sum(entries.values()) == 4 + 7
    put = (await audit_events(deployment, "ru-msk-1", "record.put"))[0]
    assert (put["version"], put["actor"], put["purpose"]) == (1, "cli", "import")
    verified = await verify_audit(deployment)
    assert verified.exit_code == 0, verified.output

    # Again: nothing new. Then a changed record: one new version, one entry.
    again = await cli(deployment.config, "import", str(source))
    assert again.exit_code == 1
    assert "imported 4 subjects (0 new) and 7 records (0 written, 7 unchanged)" in again.stderr
    assert await entry_counts(deployment) == entries
    source.write_text(subject_line("anna", "DE", records=3).replace(f"{SECRET}-1", "new") + "\n")
    changed = await cli(deployment.config, "import", str(source))
    assert changed.exit_code == 0, changed.output
    assert "(1 written, 2 unchanged)" in changed.stderr
    stored = await records_of(deployment, "eu-fra-1")
    assert stored[(ids.subject("anna"), "k1")][0] == 2
    assert stored[(ids.subject("anna"), "k0")][0] == 1
    assert sum((await entry_counts(deployment)).values()) == 4 + 7 + 1


async def test_registered_subjects_and_repeated_lines(
    deployment: Deployment, tmp_path: Path
) -> None:
    async with open_runtime(deployment.settings()) as rt:
        await rt.store.register("olga", "RU", ACTOR)
        await rt.store.register("hans", "DE", ACTOR)
    source = tmp_path / "users.jsonl"
    source.write_text(
        "\n".join(
            [
                subject_line("olga", "RU"),  # registered already, same jurisdiction: fine
                subject_line("hans", "AT"),  # another jurisdiction: refused
                subject_line("piet", "NL", records=1),
                subject_line("piet", "NL", records=2),  # again in the same batch: after it
            ]
        )
    )
    result = await cli(deployment.config, "import", str(source))
    assert result.exit_code == 1, result.output
    assert "line 2: jurisdiction_conflict: " in result.stderr
    assert "imported 3 subjects (1 new) and 5 records (4 written, 1 unchanged)" in result.stderr
    ids = pseudonyms(deployment)
    stored = await records_of(deployment, "eu-fra-1")
    assert {k: v[0] for k, v in stored.items()} == {
        (ids.subject("piet"), "k0"): 1,
        (ids.subject("piet"), "k1"): 1,
    }
    assert len(await records_of(deployment, "ru-msk-1")) == 2

    # Batches of one, written two at a time: a later line of a subject still landing waits.
    source.write_text(
        "\n".join(subject_line("piet", "NL", records=2).replace(SECRET, f"v{n}") for n in (1, 2))
    )
    result = await cli(deployment.config, "import", str(source), "--batch-size", "1")
    assert result.exit_code == 0, result.output
    stored = await records_of(deployment, "eu-fra-1")
    assert stored[(ids.subject("piet"), "k1")] == (3, '{"v":"v2-1"}')


async def test_stdin_and_exit_codes(deployment: Deployment, tmp_path: Path) -> None:
    text = "\n".join(subject_line(f"u{n}", "US") for n in range(5)) + "\n"
    result = await asyncio.to_thread(
        _invoke_with_input, ["import", "-", "--config", str(deployment.config)], text
    )
    assert result.exit_code == 0, result.output
    assert "imported 5 subjects (5 new) and 10 records" in result.stderr
    assert len(await records_of(deployment, "us-east-1")) == 10

    missing = await cli(deployment.config, "import", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith("domicile: ")
    assert missing.stderr.count("\n") == 1
    unwritable = await cli(
        deployment.config, "import", "-", "--rejects", str(tmp_path / "no" / "dir.jsonl")
    )
    assert unwritable.exit_code == 2
    assert unwritable.stderr.count("\n") == 1


def _invoke_with_input(argv: list[str], text: str) -> Any:
    from click.testing import CliRunner

    from domicile.router.cli import main

    return CliRunner().invoke(main, argv, input=text, catch_exceptions=False)


async def test_kill_9_mid_import_then_rerun(deployment: Deployment, tmp_path: Path) -> None:
    people = {f"p{n}": ("RU", "DE", "US", "FR")[n % 4] for n in range(600)}
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(subject_line(s, j, records=3) for s, j in people.items()))
    proc = spawn(deployment.config, "import", str(source), "--batch-size", "10")
    for _ in range(6000):  # until the first batches are in, then at once
        held = await query_shard(deployment, "us-east-1", "SELECT count(*) FROM subjects")
        if held[0][0] > 0 or proc.poll() is not None:
            break
        await asyncio.sleep(0.005)
    proc.kill()
    proc.communicate()
    partial = sum(len(v.subjects) for v in (await views(deployment)).values())
    assert 0 < partial < len(people)

    rerun = await cli(deployment.config, "import", str(source))
    assert rerun.exit_code == 0, rerun.output
    ids = pseudonyms(deployment)
    shards = await views(deployment)
    homes = Counter(p for view in shards.values() for p in view.home())
    assert homes == Counter({ids.subject(s): 1 for s in people})
    versions = Counter()
    for shard in SHARD_NAMES:
        versions.update(v for v, _ in (await records_of(deployment, shard)).values())
    assert versions == Counter({1: 3 * len(people)})
    entries = await entry_counts(deployment)
    assert set(entries.values()) == {1}
    assert len(entries) == 4 * len(people)
    async with open_runtime(deployment.settings(), prepare=False) as rt:
        placed = [await rt.directory.read(ids.subject(s)) for s in people]
    assert {p.state if p else None for p in placed} == {PlacementState.ACTIVE}
    verified = await verify_audit(deployment)
    assert verified.exit_code == 0, verified.output


async def test_the_shards_own_guard_refuses_what_it_may_not_hold(
    deployment: Deployment,
) -> None:
    """A router whose policy and a shard's guard disagree (another router narrowed the guard
    since this one synced it): the shard refuses the rows, those lines are rejected whole and
    the rest of the batch imports."""
    lines = [subject_line("ivan", "RU"), subject_line("pyotr", "RU"), subject_line("anna", "DE")]
    rejected: list[Rejection] = []
    async with open_runtime(deployment.settings()) as rt:
        engine = create_engine(deployment.shard_urls["ru-msk-1"])
        try:
            async with engine.begin() as conn:
                await sync_guard(conn, frozenset({"BY"}))
        finally:
            await engine.dispose()
        importer = Importer(
            rt.settings.topology,
            rt.registry,
            rt.directory,
            rt.pseudonyms,
            actor=Actor(key_id="test"),
            max_record_bytes=rt.settings.max_record_bytes,
        )
        tally = await importer.run(_chunks(lines), reject=rejected.append, batch_subjects=10)
        ivan = await rt.directory.read(rt.pseudonyms.subject("ivan"))
    assert sorted((r.line, r.code) for r in rejected) == [
        (1, "residency_guard"),
        (2, "residency_guard"),
    ]
    assert (tally.subjects, tally.records) == (1, 2)
    shards = await views(deployment)
    assert shards["ru-msk-1"].subjects == {}
    assert await records_of(deployment, "ru-msk-1") == {}
    assert await audit_events(deployment, "ru-msk-1", "subject.registered") == []
    assert len(shards["eu-fra-1"].home()) == 1
    # The refused subject's reservation stays pending: invisible, as after a failed registration.
    assert ivan is not None
    assert (ivan.shard, ivan.state) == ("ru-msk-1", PlacementState.PENDING)


async def _chunks(lines: list[str]) -> Any:
    yield [(n, line.encode() + b"\n") for n, line in enumerate(lines, start=1)]


async def test_a_subject_the_rule_no_longer_permits_is_moved_before_its_records(
    deployment: Deployment, tmp_path: Path
) -> None:
    set_policy(deployment.config, "RU", ["eu-fra"])
    async with open_runtime(deployment.settings()) as rt:
        await rt.store.register("ivan", "RU", ACTOR)
    set_policy(deployment.config, "RU", ["ru-msk"])
    source = tmp_path / "users.jsonl"
    source.write_text(subject_line("ivan", "RU") + "\n")
    result = await cli(deployment.config, "import", str(source))
    assert result.exit_code == 0, result.output
    ids = pseudonyms(deployment)
    shards = await views(deployment)
    assert ids.subject("ivan") in shards["ru-msk-1"].home()
    assert len(await records_of(deployment, "ru-msk-1")) == 2
    assert await records_of(deployment, "eu-fra-1") == {}


async def test_a_shard_failing_stops_the_run_with_its_summary(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The other shards' share of the batch is in; the summary, then one line naming the
    shard; a run once the shard is back completes the rest."""
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database file\n" * 200)
    good = deployment.shard_urls["us-east-1"]
    bad = f"sqlite+aiosqlite:///{broken}" if deployment.backend == "sqlite" else good + "_gone"
    text = deployment.config.read_text()
    deployment.config.write_text(text.replace(f'url = "{good}"', f'url = "{bad}"'))
    source = tmp_path / "users.jsonl"
    source.write_text(subject_line("ivan", "RU") + "\n" + subject_line("john", "US") + "\n")

    stopped = await cli(deployment.config, "import", str(source))
    assert stopped.exit_code == 1
    last = stopped.stderr.strip().splitlines()
    assert last[-2].startswith("imported 1 subjects (1 new) and 2 records")
    assert last[-1].startswith("domicile: shard us-east-1 ")
    assert len(await records_of(deployment, "ru-msk-1")) == 2

    deployment.config.write_text(text)
    resumed = await cli(deployment.config, "import", str(source))
    assert resumed.exit_code == 0, resumed.output
    assert "imported 2 subjects (1 new) and 4 records (2 written, 2 unchanged)" in resumed.stderr
