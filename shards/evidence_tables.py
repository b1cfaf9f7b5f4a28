"""The evidence pack's comparison of each log's replay with its shard's current tables: what the
signed history says a shard holds against what its tables hold, per jurisdiction, and the
subjects the policy does not permit there. Every difference is a finding of the statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit.evidence import LogReplay
from domicile.audit.evidence_pack import Compare
from domicile.audit.store import IssuedCheckpoint
from domicile.shards.policy import Topology
from domicile.shards.registry import ShardRegistry
from domicile.shards.residency import entries_after
from domicile.shards.schema import records, subjects
from domicile.shards.states import SubjectState

#: Subjects the log counts as held: from their arrival's entry to their departure's (a move's
#: copy has no entry until its switch; a tombstone has had its departure's).
_HELD = subjects.c.state.not_in([SubjectState.GONE, SubjectState.MOVING_IN])


async def _held(conn: AsyncConnection, jurisdiction: str | None) -> dict[str, list[int]]:
    where: list[Any] = [_HELD]
    if jurisdiction is not None:
        where.append(subjects.c.jurisdiction == jurisdiction)
    counts: dict[str, list[int]] = {}
    held = select(subjects.c.jurisdiction, func.count()).where(*where)
    for code, n in await conn.execute(held.group_by(subjects.c.jurisdiction)):
        counts[code] = [int(n), 0]
    stored = (
        select(subjects.c.jurisdiction, func.count())
        .select_from(records.join(subjects, records.c.pseudonym == subjects.c.pseudonym))
        .where(*where)
        .group_by(subjects.c.jurisdiction)
    )
    for code, n in await conn.execute(stored):
        counts.setdefault(code, [0, 0])[1] = int(n)
    return counts


async def _unpermitted(conn: AsyncConnection, codes: list[str]) -> set[str]:
    if not codes:
        return set()
    rows = await conn.execute(
        select(subjects.c.pseudonym).where(_HELD, subjects.c.jurisdiction.in_(codes))
    )
    return {pseudonym for (pseudonym,) in rows}


def table_comparison(registry: ShardRegistry, topology: Topology) -> Compare:
    """The pack writer's ``Compare`` for this deployment's shards."""

    async def compare(log: str, checkpoint: IssuedCheckpoint, replay: LogReplay) -> list[str]:
        shard = registry[log]
        async with shard.read(snapshot=True) as conn:
            counts = await _held(conn, replay.jurisdiction)
            refused = [c for c in counts if not topology.is_permitted(c, shard.name)]
            unpermitted = await _unpermitted(conn, refused)
            later = await entries_after(conn, checkpoint.size)
        after = f" ({later} entries were committed after the checkpoint)" if later else ""
        logged = replay.held_counts()
        findings = []
        for code in sorted(logged.keys() | counts.keys()):
            tables = tuple(counts.get(code, (0, 0)))
            if tables != logged.get(code, (0, 0)):
                n, m = logged.get(code, (0, 0)), tables
                findings.append(
                    f"shard {log}: the log says it holds {n[0]} subjects and {n[1]} records of "
                    f"{code}, its tables hold {m[0]} and {m[1]}{after}"
                )
        if unpermitted != replay.unpermitted:
            findings.append(
                f"shard {log}: the tables hold {len(unpermitted)} subjects the configured "
                f"policy does not permit there, the log {len(replay.unpermitted)}{after}"
            )
        return findings

    return compare
