"""Landing a batch of imported subjects and their records on one shard, in the caller's
transaction, with every audit entry: placement rule 5 holds for thousands of rows at a time.

A subject new to the shard cannot have records there yet (they reference it, and its row is
inserted in this very transaction), so its records are written as they are, with their
``record.put`` entries made beforehand at version 1: ``COPY`` on PostgreSQL (``bulk``; the
residency guard's triggers fire on every row), one executemany each on SQLite. A subject the shard
already holds (a re-run after an interruption, a subject registered before) is checked against
its fence and gets only the records whose content differs from what is stored, each a new
version; identical content makes no version and no entry, so a re-run adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit import events
from domicile.audit.events import Actor
from domicile.shards import bulk
from domicile.shards.auditlog import append_leaves, shard_leaf
from domicile.shards.engines import insert_on_conflict
from domicile.shards.errors import DomicileError, NotHome, SubjectMoving
from domicile.shards.registry import Shard
from domicile.shards.rows import RecordRow
from domicile.shards.schema import records, subjects
from domicile.shards.states import SubjectState


class Incoming(NamedTuple):  # a tuple: an import makes millions
    """A record to land, with its ``record.put`` leaf as version 1 on the target shard."""

    collection: str
    key: str
    data: str
    content_sha256: str
    pseudonym: str  # the record's
    leaf: bytes


@dataclass(frozen=True)
class Arrival:
    """A subject to land, with its ``subject.registered`` leaf on the target shard."""

    pseudonym: str
    subject_id: str
    jurisdiction: str
    registered: bytes
    records: tuple[Incoming, ...]
    time: datetime


@dataclass(frozen=True)
class Landed:
    new: bool  # registered on the shard now
    written: int  # records given a new version
    unchanged: int  # records already stored with the same content


# New subjects and their entries in one statement; returns those inserted (a concurrent
# registration may have inserted one meanwhile: it is then an existing subject).
_INSERT_SUBJECTS_PG = text(
    f"""
WITH new AS (
    INSERT INTO subjects (pseudonym, subject_id, jurisdiction, state, placement_version,
                          created_at, updated_at)
    SELECT s.pseudonym, s.subject_id, s.jurisdiction, '{SubjectState.HOME}', 1,
           CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM unnest(CAST(:pseudonyms AS text[]), CAST(:ids AS text[]), CAST(:jurisdictions AS text[]))
        AS s(pseudonym, subject_id, jurisdiction)
    ON CONFLICT (pseudonym) DO NOTHING
    RETURNING pseudonym
), logged AS (
    INSERT INTO audit_pending (leaf, subject)
    SELECT e.leaf, e.subject
    FROM unnest(CAST(:pseudonyms AS text[]), CAST(:leaves AS bytea[])) WITH ORDINALITY
        AS e(subject, leaf, n)
    WHERE e.subject IN (SELECT pseudonym FROM new) ORDER BY e.n
)
SELECT pseudonym FROM new
"""  # noqa: S608  (the state is the vocabulary's own value, never input)
)


async def land(
    conn: AsyncConnection, shard: Shard, arrivals: Sequence[Arrival], actor: Actor
) -> dict[str, Landed | DomicileError]:
    """Write ``arrivals`` (distinct subjects) to ``shard`` in the caller's write transaction;
    each subject's outcome, by pseudonym: landed, or refused by its fence."""
    new = await _insert_subjects(conn, arrivals)
    fresh = [a for a in arrivals if a.pseudonym in new]
    rows = [
        RecordRow(
            a.pseudonym,
            r.collection,
            r.key,
            r.data,
            1,
            a.jurisdiction,
            r.content_sha256,
            a.time,
            a.time,
        )
        for a in fresh
        for r in a.records
    ]
    await bulk.write_records(conn, shard.name, rows)
    await bulk.write_entries(
        conn, shard.name, [(r.leaf, a.pseudonym) for a in fresh for r in a.records]
    )
    outcomes: dict[str, Landed | DomicileError] = {
        a.pseudonym: Landed(True, len(a.records), 0) for a in fresh
    }
    held = [a for a in arrivals if a.pseudonym not in new]
    if held:
        outcomes.update(await _update_held(conn, shard, held, actor))
    return outcomes


async def _insert_subjects(conn: AsyncConnection, arrivals: Sequence[Arrival]) -> set[str]:
    if not arrivals:
        return set()
    now = arrivals[0].time
    if conn.dialect.name == "postgresql":
        inserted = await conn.execute(
            _INSERT_SUBJECTS_PG,
            {
                "now": now,
                "pseudonyms": [a.pseudonym for a in arrivals],
                "ids": [a.subject_id for a in arrivals],
                "jurisdictions": [a.jurisdiction for a in arrivals],
                "leaves": [a.registered for a in arrivals],
            },
        )
        return set(inserted.scalars())
    # SQLite: writers are serialised (BEGIN IMMEDIATE), so what is absent now stays absent.
    present = set(
        (
            await conn.execute(
                select(subjects.c.pseudonym).where(
                    subjects.c.pseudonym.in_([a.pseudonym for a in arrivals])
                )
            )
        ).scalars()
    )
    fresh = [a for a in arrivals if a.pseudonym not in present]
    if fresh:
        await conn.execute(
            insert(subjects),
            [
                {
                    "pseudonym": a.pseudonym,
                    "subject_id": a.subject_id,
                    "jurisdiction": a.jurisdiction,
                    "state": SubjectState.HOME,
                    "placement_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for a in fresh
            ],
        )
        await append_leaves(conn, [a.registered for a in fresh], [a.pseudonym for a in fresh])
    return {a.pseudonym for a in fresh}


async def _update_held(
    conn: AsyncConnection, shard: Shard, held: Sequence[Arrival], actor: Actor
) -> dict[str, Landed | DomicileError]:
    """Subjects the shard holds already: behind their fence (share-locked, as every write's),
    a new version of each record whose content differs."""
    wanted = [a.pseudonym for a in held]
    states = {
        p: state
        for p, state in await conn.execute(
            select(subjects.c.pseudonym, subjects.c.state)
            .where(subjects.c.pseudonym.in_(wanted))
            .with_for_update(read=True)
        )
    }
    home = [a for a in held if states.get(a.pseudonym) == SubjectState.HOME]
    stored = {
        (p, c, k): digest
        for p, c, k, digest in await conn.execute(
            select(
                records.c.pseudonym, records.c.collection, records.c.key, records.c.content_sha256
            ).where(records.c.pseudonym.in_([a.pseudonym for a in home]))
        )
    }
    outcomes: dict[str, Landed | DomicileError] = {
        a.pseudonym: SubjectMoving()
        if states.get(a.pseudonym) == SubjectState.MOVING_OUT
        else NotHome(shard.name)
        for a in held
        if states.get(a.pseudonym) != SubjectState.HOME
    }
    leaves: list[bytes] = []
    owners: list[str] = []
    for a in home:
        changed = [
            r
            for r in a.records
            if stored.get((a.pseudonym, r.collection, r.key)) != r.content_sha256
        ]
        for r in changed:
            version = await _put(conn, a, r)
            leaves.append(
                shard_leaf(
                    shard,
                    events.RECORD_PUT,
                    actor,
                    subject=a.pseudonym,
                    jurisdiction=a.jurisdiction,
                    record=r.pseudonym,
                    content_sha256=r.content_sha256,
                    version=version,
                    time=a.time,
                )
            )
            owners.append(a.pseudonym)
        outcomes[a.pseudonym] = Landed(False, len(changed), len(a.records) - len(changed))
    await append_leaves(conn, leaves, owners)
    return outcomes


async def _put(conn: AsyncConnection, arrival: Arrival, record: Incoming) -> int:
    """Create or replace one record, as ``RecordStore.put`` does; returns its version."""
    values = {
        "data": record.data,
        "content_sha256": record.content_sha256,
        "updated_at": arrival.time,
    }
    stmt = (
        insert_on_conflict(conn, records)
        .values(
            pseudonym=arrival.pseudonym,
            collection=record.collection,
            key=record.key,
            version=1,
            jurisdiction=arrival.jurisdiction,
            created_at=arrival.time,
            **values,
        )
        .on_conflict_do_update(
            index_elements=[records.c.pseudonym, records.c.collection, records.c.key],
            set_={**values, "version": records.c.version + 1},
        )
        .returning(records.c.version)
    )
    return int((await conn.execute(stmt)).scalar_one())
