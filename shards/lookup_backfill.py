"""Building a lookup index from a field of existing records (``domicile lookups backfill``).

Each shard is read in pages of subjects; a subject's value is the field of its first record of
the collection (by key) where the field is a string. Each value is set like a ``PUT`` of the
lookup key would set it, so a re-run skips what is in (resumable), and a value another subject
holds is reported as a conflict, never decided: the operator chooses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, select

from domicile.audit.events import Actor
from domicile.shards.errors import InvalidInput, LookupTaken, NotHome, SubjectMoving
from domicile.shards.lookup_keys import LookupValue
from domicile.shards.registry import Shard
from domicile.shards.schema import lookups, records, subjects
from domicile.shards.states import SubjectState
from domicile.shards.store import RecordStore
from domicile.shards.validation import validate_collection

PAGE = 500


@dataclass(frozen=True)
class Conflict:
    """Two subjects with one value: by pseudonym (this report may be read anywhere)."""

    subject: str
    shard: str
    holder: str | None  # None: the holder could not be read


@dataclass
class BackfillReport:
    subjects: int = 0  # subjects with a value in the field
    set: int = 0  # set now (or, in a dry run, to be set)
    unchanged: int = 0  # already set to that value
    conflicts: list[Conflict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # pseudonyms whose value does not normalise
    skipped: list[str] = field(default_factory=list)  # mid-move now: run again later

    @property
    def complete(self) -> bool:
        return not (self.conflicts or self.invalid or self.skipped)


#: Called after each page: shard name, subjects of the shard read so far.
Progress = Callable[[str, int], None]


async def _page(
    shard: Shard, collection: str, field_name: str, kind: str, after: str
) -> list[tuple[str, str, str, str, str | None]]:
    """Up to ``PAGE`` subjects homed on ``shard`` after pseudonym ``after`` with a record in
    ``collection``: (pseudonym, subject id, jurisdiction, their value or "" when no record has
    the field as a string, the blind value of their ``kind`` key)."""
    page = (
        select(
            subjects.c.pseudonym, subjects.c.subject_id, subjects.c.jurisdiction, lookups.c.blind
        )
        .outerjoin(
            lookups, and_(lookups.c.pseudonym == subjects.c.pseudonym, lookups.c.kind == kind)
        )
        .where(
            subjects.c.state == SubjectState.HOME,
            subjects.c.pseudonym > after,
            select(records.c.key)
            .where(records.c.pseudonym == subjects.c.pseudonym, records.c.collection == collection)
            .exists(),
        )
        .order_by(subjects.c.pseudonym)
        .limit(PAGE)
    )
    async with shard.read() as conn:
        found = (await conn.execute(page)).all()
        data = await conn.execute(
            select(records.c.pseudonym, records.c.data)
            .where(
                records.c.pseudonym.in_([row.pseudonym for row in found]),
                records.c.collection == collection,
            )
            .order_by(records.c.pseudonym, records.c.key)
        )
        values: dict[str, str] = {}
        for pseudonym, stored in data:
            value = _field(stored, field_name)
            if value is not None:
                values.setdefault(pseudonym, value)
    return [(p, subject_id, j, values.get(p, ""), blind) for p, subject_id, j, blind in found]


def _field(data: str, name: str) -> str | None:
    value: Any = orjson.loads(data).get(name)
    return value if isinstance(value, str) else None


async def backfill(
    store: RecordStore,
    kind: str,
    collection: str,
    field_name: str,
    actor: Actor,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BackfillReport:
    store.lookup_keys.method(kind)
    validate_collection(collection)
    report = BackfillReport()
    seen: dict[str, str] = {}  # blind -> pseudonym, for conflicts within a dry run
    for shard in store.registry.all():
        after, done = "", 0
        while rows := await _page(shard, collection, field_name, kind, after):
            for pseudonym, subject_id, jurisdiction, value, held in rows:
                if value:
                    await _one(
                        store, report, seen, shard, kind, actor, dry_run,
                        pseudonym, subject_id, jurisdiction, value, held,
                    )  # fmt: skip
            done += len(rows)
            after = rows[-1][0]
            if progress is not None:
                progress(shard.name, done)
    return report


async def _one(
    store: RecordStore,
    report: BackfillReport,
    seen: dict[str, str],
    shard: Shard,
    kind: str,
    actor: Actor,
    dry_run: bool,
    pseudonym: str,
    subject_id: str,
    jurisdiction: str,
    value: str,
    held: str | None,
) -> None:
    report.subjects += 1
    try:
        prepared: LookupValue = store.lookup_keys.prepare(kind, value, jurisdiction)
    except InvalidInput:
        report.invalid.append(pseudonym)
        return
    if held == prepared.blind:
        report.unchanged += 1
        return
    if dry_run:
        claim = await store.lookup_index.get(kind, prepared.blind)
        other = seen.setdefault(prepared.blind, pseudonym)
        if claim is not None and claim.pseudonym != pseudonym:
            report.conflicts.append(Conflict(pseudonym, shard.name, claim.pseudonym))
        elif other != pseudonym:
            report.conflicts.append(Conflict(pseudonym, shard.name, other))
        else:
            report.set += 1
        return
    try:
        await store.set_lookups(subject_id, {kind: value}, actor)
    except LookupTaken:
        claim = await store.lookup_index.get(kind, prepared.blind)
        report.conflicts.append(
            Conflict(pseudonym, shard.name, None if claim is None else claim.pseudonym)
        )
        return
    except (SubjectMoving, NotHome):
        report.skipped.append(pseudonym)
        return
    report.set += 1
