"""Rotating the lookup secret (``domicile lookups rekey``): every lookup key's blind value is
computed again under the new secret from the normalised value its home shard keeps.

Per key, in an order that any interruption leaves consistent and that a re-run resumes: the new
blind value is entered in the catalog (active, for the same subject), the shard's row takes it
with a ``lookup.set`` entry (``reason: rekey``), and the old entry is dropped. A key whose row
already has its new blind value is skipped. Routers are stopped meanwhile (they hold the old secret:
docs/architecture.md, "Lookup keys").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from domicile.audit import events
from domicile.audit.events import Actor
from domicile.shards.auditlog import append_entry
from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import lookups as index
from domicile.shards.errors import LookupTaken
from domicile.shards.lookup_keys import LookupKeys
from domicile.shards.registry import Shard, ShardRegistry
from domicile.shards.schema import lookups, subjects
from domicile.shards.states import ClaimState

PAGE = 500

#: Called after each page: shard name, keys of the shard rekeyed so far.
Progress = Callable[[str, int], None]


async def rekey(
    catalog: Catalog,
    registry: ShardRegistry,
    keys: LookupKeys,
    actor: Actor,
    progress: Progress | None = None,
) -> int:
    """Re-key every lookup key to ``keys``' secret; returns how many changed."""
    changed = 0
    for shard in registry.all():
        after: tuple[str, str] = ("", "")
        done = 0
        while True:
            async with shard.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            lookups.c.pseudonym,
                            lookups.c.kind,
                            lookups.c.normalized,
                            lookups.c.blind,
                            subjects.c.jurisdiction,
                        )
                        .join(subjects, subjects.c.pseudonym == lookups.c.pseudonym)
                        .where(tuple_(lookups.c.pseudonym, lookups.c.kind) > tuple_(*after))
                        .order_by(lookups.c.pseudonym, lookups.c.kind)
                        .limit(PAGE)
                    )
                ).all()
            if not rows:
                break
            for pseudonym, kind, normalized, old, jurisdiction in rows:
                new = keys.blind(kind, normalized)
                if new != old:
                    await _rekey_one(catalog, shard, actor, pseudonym, jurisdiction, kind, old, new)
                    changed += 1
            done += len(rows)
            after = (rows[-1][0], rows[-1][1])
            if progress is not None:
                progress(shard.name, done)
    return changed


async def _rekey_one(
    catalog: Catalog,
    shard: Shard,
    actor: Actor,
    pseudonym: str,
    jurisdiction: str,
    kind: str,
    old: str,
    new: str,
) -> None:
    now = datetime.now(UTC)
    try:
        async with catalog.transaction(write=True) as conn:
            await conn.execute(
                insert(index).values(
                    kind=kind,
                    blind=new,
                    pseudonym=pseudonym,
                    state=ClaimState.ACTIVE,
                    owner=None,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:  # entered by an interrupted run: it must be this subject's
        async with catalog.transaction(write=False) as conn:
            holder = (
                await conn.execute(
                    select(index.c.pseudonym).where(index.c.kind == kind, index.c.blind == new)
                )
            ).scalar_one_or_none()
        if holder != pseudonym:
            raise LookupTaken(kind) from None
    async with shard.write() as conn:
        await conn.execute(
            update(lookups)
            .where(lookups.c.pseudonym == pseudonym, lookups.c.kind == kind)
            .values(blind=new, updated_at=now)
        )
        await append_entry(
            conn,
            shard,
            events.LOOKUP_SET,
            actor,
            subject=pseudonym,
            jurisdiction=jurisdiction,
            kind=kind,
            blind=new,
            reason="rekey",
        )
    async with catalog.transaction(write=True) as conn:
        await conn.execute(
            delete(index).where(
                index.c.kind == kind, index.c.blind == old, index.c.pseudonym == pseudonym
            )
        )
