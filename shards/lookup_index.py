"""The blind index in the catalog: (kind, blind value) -> pseudonym, one subject per value.

Setting a lookup key crosses two databases, like registration: the value is claimed here
(``pending``, held by the claiming process), written on the home shard with its audit entry,
then activated. A claim by a process that died (kill -9, OOM: ``owner_is_dead``) or that has
held it past ``CLAIM_LEASE`` blocks nobody: the next claimant settles it by asking the holder's
home shard whether the value was written there (then it is activated for its holder: the
write committed) or not (then the claimant takes it over). An active entry whose holder's
shard no longer holds the value (replaced, removed or erased by a request that stopped before
the catalog) is taken over the same way. Every change is a compare-and-swap, so of concurrent
claimants exactly one wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import lookups
from domicile.shards.errors import CatalogUnavailable, LookupTaken
from domicile.shards.moves import owner_is_dead
from domicile.shards.states import ClaimState

#: How long a live process may hold a claim without activating it before it can be taken over.
CLAIM_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Claim:
    kind: str
    blind: str
    pseudonym: str
    state: ClaimState
    owner: str | None
    updated_at: datetime


#: Whether a subject's home shard holds (kind, blind): the holder of a claim being settled.
Holds = Callable[[str, str, str], Awaitable[bool]]

_COLUMNS = (
    lookups.c.kind,
    lookups.c.blind,
    lookups.c.pseudonym,
    lookups.c.state,
    lookups.c.owner,
    lookups.c.updated_at,
)
# The state is the vocabulary's own value, never input.
_FIND_PG = f"""
SELECT coalesce(array_agg(blind), '{{}}'), coalesce(array_agg(pseudonym), '{{}}') FROM lookups
WHERE kind = $1 AND blind = ANY($2::text[]) AND state = '{ClaimState.ACTIVE}'
"""  # noqa: S608


def _now() -> datetime:
    return datetime.now(UTC)


def _claim(row: Sequence[Any]) -> Claim:
    kind, blind, pseudonym, state, owner, updated_at = row
    if updated_at.tzinfo is None:  # SQLite hands naive datetimes back
        updated_at = updated_at.replace(tzinfo=UTC)
    return Claim(kind, blind, pseudonym, ClaimState(state), owner, updated_at)


class LookupIndex:
    def __init__(self, catalog: Catalog, owner: str, lease: timedelta = CLAIM_LEASE) -> None:
        self._catalog = catalog
        self.owner = owner
        self._lease = lease

    # -- reads -------------------------------------------------------------------------------

    async def find(self, kind: str, blinds: Sequence[str]) -> dict[str, str]:
        """Active entries among ``blinds``: blind -> pseudonym. On PostgreSQL one prepared
        statement, as a placement read."""
        pool = self._catalog.statements
        if pool is not None:
            row = await pool.fetchrow(_FIND_PG, kind, list(blinds), unavailable=CatalogUnavailable)
            assert row is not None
            return dict(zip(row[0], row[1], strict=True))
        async with self._catalog.transaction(write=False) as conn:
            found = await conn.execute(
                select(lookups.c.blind, lookups.c.pseudonym).where(
                    lookups.c.kind == kind,
                    lookups.c.blind.in_(list(blinds)),
                    lookups.c.state == ClaimState.ACTIVE,
                )
            )
            return {blind: pseudonym for blind, pseudonym in found}

    async def get(self, kind: str, blind: str) -> Claim | None:
        async with self._catalog.transaction(write=False) as conn:
            row = (
                await conn.execute(
                    select(*_COLUMNS).where(lookups.c.kind == kind, lookups.c.blind == blind)
                )
            ).first()
        return None if row is None else _claim(row)

    # -- claims ------------------------------------------------------------------------------

    async def claim(self, kind: str, blind: str, pseudonym: str, holds: Holds) -> bool:
        """Claim (kind, blind) for ``pseudonym``: True if this call made a new claim (to be
        activated, or released if the write fails), False if the subject holds it already.
        ``LookupTaken`` if another subject does."""
        for _ in range(5):
            try:
                async with self._catalog.transaction(write=True) as conn:
                    now = _now()
                    await conn.execute(
                        insert(lookups).values(
                            kind=kind,
                            blind=blind,
                            pseudonym=pseudonym,
                            state=ClaimState.PENDING,
                            owner=self.owner,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return True
            except IntegrityError:
                pass
            held = await self.get(kind, blind)
            if held is None:
                continue  # released in between: claim again
            if held.pseudonym == pseudonym:
                return False
            if not await self._settle(held, holds):
                raise LookupTaken(kind)
            if await self._take_over(held, pseudonym):
                return True
        raise LookupTaken(kind)

    async def _settle(self, held: Claim, holds: Holds) -> bool:
        """Whether ``held``, another subject's, is stale and may be taken over. A live claim
        is not; a crashed one whose write committed is activated for its holder."""
        if held.state == ClaimState.PENDING and not self._abandoned(held):
            return False
        if not await holds(held.pseudonym, held.kind, held.blind):
            return True
        if held.state == ClaimState.PENDING:
            await self._activate_abandoned(held)
        return False

    def _abandoned(self, held: Claim) -> bool:
        if held.owner is not None and owner_is_dead(held.owner):
            return True
        return held.updated_at + self._lease < _now()

    def _unchanged(self, held: Claim) -> Any:
        """The claim as it was read: the compare of every compare-and-swap here."""
        return and_(
            lookups.c.kind == held.kind,
            lookups.c.blind == held.blind,
            lookups.c.pseudonym == held.pseudonym,
            lookups.c.state == held.state,
            lookups.c.owner.is_(None) if held.owner is None else lookups.c.owner == held.owner,
        )

    async def _take_over(self, held: Claim, pseudonym: str) -> bool:
        async with self._catalog.transaction(write=True) as conn:
            done = await conn.execute(
                update(lookups)
                .where(self._unchanged(held))
                .values(
                    pseudonym=pseudonym,
                    state=ClaimState.PENDING,
                    owner=self.owner,
                    updated_at=_now(),
                )
            )
        return done.rowcount == 1

    async def _activate_abandoned(self, held: Claim) -> None:
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(
                update(lookups)
                .where(self._unchanged(held))
                .values(state=ClaimState.ACTIVE, owner=None, updated_at=_now())
            )

    async def activate_all(self, claims: Sequence[tuple[str, str]], pseudonym: str) -> bool:
        """Activate the subject's claims of (kind, blind); whether it still held them all."""
        if not claims:
            return True
        async with self._catalog.transaction(write=True) as conn:
            done = await conn.execute(
                update(lookups)
                .where(
                    tuple_(lookups.c.kind, lookups.c.blind).in_(list(claims)),
                    lookups.c.pseudonym == pseudonym,
                )
                .values(state=ClaimState.ACTIVE, owner=None, updated_at=_now())
            )
        return done.rowcount == len(claims)

    async def release(
        self, pseudonym: str, kind: str | None = None, *, keep: str | None = None
    ) -> None:
        """Drop the subject's entries (of ``kind``, but for the blind value ``keep``): after
        the home shard dropped or replaced the values, or a claim whose write failed."""
        where = [lookups.c.pseudonym == pseudonym]
        if kind is not None:
            where.append(lookups.c.kind == kind)
        if keep is not None:
            where.append(lookups.c.blind != keep)
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(delete(lookups).where(*where))

    async def release_claims(self, claims: Sequence[tuple[str, str]], pseudonym: str) -> None:
        """Drop the subject's pending claims of (kind, blind): a write that failed."""
        if not claims:
            return
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(
                delete(lookups).where(
                    tuple_(lookups.c.kind, lookups.c.blind).in_(list(claims)),
                    lookups.c.pseudonym == pseudonym,
                    lookups.c.state == ClaimState.PENDING,
                )
            )
