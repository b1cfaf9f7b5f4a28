"""Policy history in the logs: a ``policy.changed`` entry in a shard's log whenever a process
opens the shard for writing with a policy, or region facts, other than the log's latest entry
declares. Written in the shard's start-up transaction, which processes starting together take
one at a time (``serialize_writers``), after reading the latest declaration inside it: of many
processes starting with a new policy, the first appends and the others find it there."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from domicile.audit.events import POLICY_CHANGED, SYSTEM, decode_leaf
from domicile.audit.policy_record import DEFAULT, REGION_FACTS, policy_sha256
from domicile.shards.auditlog import append_entry
from domicile.shards.policy import DEFAULT_RULE, ISO_CODES, Rule, Topology
from domicile.shards.registry import Shard
from domicile.shards.schema import audit_entries, audit_pending


def effective_policy(topology: Topology) -> dict[str, dict[str, Any]]:
    """Every jurisdiction's rule as the router resolves it (see ``audit.policy_record``)."""
    policy = {
        code: _shown(rule)
        for code in sorted(ISO_CODES)
        if (rule := topology.rule_for(code)) is not None and rule.key != DEFAULT_RULE
    }
    default = topology.rules.get(DEFAULT_RULE)
    if default is not None:
        policy[DEFAULT] = _shown(default)
    return policy


def _shown(rule: Rule) -> dict[str, Any]:
    shown: dict[str, Any] = {"store_in": list(rule.store_in)}
    if rule.law is not None:
        shown["law"] = rule.law
    if rule.effective is not None:
        # As the residency report and the config write it: RFC 3339, UTC, no added digits.
        shown["effective"] = rule.effective.astimezone(UTC).isoformat().replace("+00:00", "Z")
        shown["before"] = list(rule.before)
    return shown


def declaration(shard: Shard, topology: Topology) -> dict[str, Any]:
    """The fields of the shard's ``policy.changed`` entry (``region`` and ``country`` are in
    every leaf)."""
    policy = effective_policy(topology)
    region = shard.region
    return {
        "policy": policy,
        "policy_sha256": policy_sha256(policy),
        "provider": region.provider,
        "address": region.address,
        "legal_entity": region.legal_entity,
    }


def _declared(event: Mapping[str, Any]) -> tuple[Any, ...]:
    return (event.get("policy_sha256"), *(event.get(fact) for fact in REGION_FACTS))


# System entries (no subject) of the log, queued ones first (they will be integrated after every
# integrated one), newest first; one statement, so an entry the integrator moves meanwhile is
# seen exactly once.
_SYSTEM_ENTRIES = union_all(
    select(audit_pending.c.leaf, literal(1).label("queued"), audit_pending.c.id.label("n")).where(
        audit_pending.c.subject.is_(None)
    ),
    select(audit_entries.c.leaf, literal(0).label("queued"), audit_entries.c.idx.label("n")).where(
        audit_entries.c.subject.is_(None)
    ),
).subquery()
_LATEST_FIRST = select(_SYSTEM_ENTRIES.c.leaf).order_by(
    _SYSTEM_ENTRIES.c.queued.desc(), _SYSTEM_ENTRIES.c.n.desc()
)


async def latest_declaration(conn: AsyncConnection) -> Mapping[str, Any] | None:
    """The log's latest ``policy.changed`` event, or None."""
    for (leaf,) in await conn.execute(_LATEST_FIRST):
        event = decode_leaf(bytes(leaf))
        if event.get("event") == POLICY_CHANGED:
            return event
    return None


async def log_policy(conn: AsyncConnection, shard: Shard, topology: Topology) -> bool:
    """Append the shard's ``policy.changed`` entry if its log's latest one declares otherwise,
    inside the caller's serialized transaction; returns whether it did."""
    fields = declaration(shard, topology)
    wanted = (
        fields["policy_sha256"],
        shard.region.name,
        shard.region.country,
        *(fields[fact] for fact in REGION_FACTS[2:]),
    )
    latest = await latest_declaration(conn)
    if latest is not None and _declared(latest) == wanted:
        return False
    await append_entry(
        conn,
        shard,
        POLICY_CHANGED,
        SYSTEM,
        subject=None,
        jurisdiction=None,
        keep_null=frozenset(REGION_FACTS),
        **fields,
    )
    return True
