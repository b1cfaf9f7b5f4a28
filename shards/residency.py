"""The residency report's reading of the shards: for each shard, where it is, what it holds per
jurisdiction and whether the policy permits it there, the rows it does not permit (by
pseudonym), and the changes committed after the log checkpoint the counts were read against.
``domicile.audit.report`` assembles and signs the report."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit.report import assemble_report
from domicile.audit.service import AuditService
from domicile.audit.store import IssuedCheckpoint
from domicile.shards.errors import Unavailable
from domicile.shards.policy import DEFAULT_RULE, ISO_CODES, Topology
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.schema import audit_entries, audit_pending, records, subjects
from domicile.shards.states import SubjectState


async def _counts(
    conn: AsyncConnection, column: Any, where: list[Any], jurisdiction: str | None
) -> dict[str, int]:
    if jurisdiction is not None:
        where = [*where, column == jurisdiction]
    rows = await conn.execute(select(column, func.count()).where(*where).group_by(column))
    return {code: int(n) for code, n in rows}


async def _violations(conn: AsyncConnection, codes: list[str]) -> list[dict[str, Any]]:
    if not codes:
        return []
    held = func.count(records.c.key)
    rows = await conn.execute(
        select(subjects.c.pseudonym, subjects.c.jurisdiction, held)
        .select_from(subjects.outerjoin(records, records.c.pseudonym == subjects.c.pseudonym))
        .where(subjects.c.state != SubjectState.GONE, subjects.c.jurisdiction.in_(codes))
        .group_by(subjects.c.pseudonym, subjects.c.jurisdiction)
        .order_by(subjects.c.jurisdiction, subjects.c.pseudonym)
    )
    return [{"subject": p, "jurisdiction": j, "records": int(n)} for p, j, n in rows]


async def _shard_section(
    shard: Shard, topology: Topology, checkpoint: IssuedCheckpoint, jurisdiction: str | None
) -> dict[str, Any]:
    async with shard.read(snapshot=True) as conn:  # every count from one snapshot
        held = await _counts(
            conn, subjects.c.jurisdiction, [subjects.c.state != SubjectState.GONE], jurisdiction
        )
        stored = await _counts(conn, records.c.jurisdiction, [], jurisdiction)
        codes = sorted(held.keys() | stored.keys())
        refused = [c for c in codes if not topology.is_permitted(c, shard.name)]
        violations = await _violations(conn, refused)
        later = await entries_after(conn, checkpoint.size)
    rows = []
    for code in codes:
        rule = topology.rule_for(code)
        rows.append(
            {
                "jurisdiction": code,
                "subjects": held.get(code, 0),
                "records": stored.get(code, 0),
                "permitted": code not in refused,
                "law": rule.law if rule is not None else None,
            }
        )
    return {
        "jurisdictions": rows,
        "violations": violations,
        # Changes committed after the checkpoint, already visible in the counts: 0 means the
        # counts are exactly the state the checkpoint's log describes.
        "entries_after_checkpoint": later,
    }


async def build_report(
    service: AuditService, registry: ShardRegistry, jurisdiction: str | None = None
) -> dict[str, Any]:
    """Read every shard (concurrently) against a fresh checkpoint of its log."""
    topology = registry.topology

    async def section(shard: Shard) -> dict[str, Any]:
        region = shard.region
        head: dict[str, Any] = {
            "shard": shard.name,
            "region": region.name,
            "country": region.country,
            "provider": region.provider,
            "address": region.address,
            "legal_entity": region.legal_entity,
        }
        try:
            checkpoint = await service.checkpoint(shard.name)
            body = await _shard_section(shard, topology, checkpoint, jurisdiction)
        except Unavailable:
            return {**head, "status": "unavailable"}
        return {
            **head,
            "status": "ok",
            "log": {
                "origin": service.origin(shard.name),
                "size": checkpoint.size,
                "checkpoint": checkpoint.note,
            },
            **body,
        }

    shards = await asyncio.gather(*(section(shard) for shard in registry.all()))
    return assemble_report(service, jurisdiction, policy_rules(topology), shards)


def policy_rules(topology: Topology) -> dict[str, dict[str, Any]]:
    """The whole policy, rule by rule as configured (a jurisdiction, a group, ``default``), each
    with the jurisdictions it governs as the router resolves them (a group's members with no
    rule of their own; for ``default``, every other code): a report shows every rule, not only
    those of the data it counted."""
    governed: dict[str, list[str]] = {key: [] for key in topology.rules}
    for code in sorted(ISO_CODES):
        rule = topology.rule_for(code)
        if rule is not None:
            governed[rule.key].append(code)
    own = sorted(k for k in topology.rules if k != DEFAULT_RULE and k not in topology.groups)
    groups = sorted(k for k in topology.rules if k in topology.groups)
    order = own + groups + ([DEFAULT_RULE] if DEFAULT_RULE in topology.rules else [])
    return {key: _rule(topology, key, governed[key]) for key in order}


def _rule(topology: Topology, key: str, governed: list[str]) -> dict[str, Any]:
    rule = topology.rules[key]
    shown: dict[str, Any] = {
        "jurisdictions": governed,
        "store_in": list(rule.store_in),
        "law": rule.law,
    }
    if rule.effective is not None:  # a rule that takes effect at a time: when, and until then
        shown["effective"] = rule.effective.isoformat().replace("+00:00", "Z")
        shown["before"] = list(rule.before)
    return shown


async def entries_after(conn: AsyncConnection, size: int) -> int:
    """Entries of the shard's log that a checkpoint of ``size`` does not cover."""
    # Queued entries have no index yet: every one of them is after the checkpoint.
    count = await conn.scalar(
        select(
            select(func.count()).select_from(audit_pending).scalar_subquery()
            + select(func.count())
            .select_from(audit_entries)
            .where(audit_entries.c.idx >= size)
            .scalar_subquery()
        )
    )
    return int(count or 0)
