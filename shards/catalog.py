"""The catalog (control database): the directory of placements and the API keys.

It holds pseudonyms, jurisdictions and shard names only: never a raw subject id, record key or
content (contract, invariant 4).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shards.catalog_schema import api_keys, directory
from shards.engines import create_engine, transaction
from shards.errors import CatalogUnavailable

SCOPES: frozenset[str] = frozenset(
    {"records:read", "records:write", "subjects:write", "audit:read", "admin"}
)

PENDING, ACTIVE, MOVING = "pending", "active", "moving"


@dataclass(frozen=True)
class Placement:
    pseudonym: str
    jurisdiction: str
    shard: str
    version: int
    state: str


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    secret_sha256: str
    revoked: bool

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str  # shown once; only its hash is stored


def _now() -> datetime:
    return datetime.now(UTC)


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random tokens, so a fast hash suffices (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``dmk_<key id>_<secret>`` -> (key id, token); None when it is not shaped like a key."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != "dmk" or not parts[1] or not parts[2]:
        return None
    return parts[1], token


class Catalog:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def _tx(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self.engine, write=write, unavailable=CatalogUnavailable)

    async def dispose(self) -> None:
        await self.engine.dispose()

    # -- directory ---------------------------------------------------------------------------

    async def get(self, pseudonym: str) -> Placement | None:
        async with self._tx(write=False) as conn:
            row = (
                await conn.execute(select(directory).where(directory.c.pseudonym == pseudonym))
            ).first()
        if row is None:
            return None
        return Placement(
            row.pseudonym, row.jurisdiction, row.shard, row.placement_version, row.state
        )

    async def reserve(self, pseudonym: str, jurisdiction: str, shard: str) -> Placement:
        """Insert a pending placement, or return the one a concurrent or earlier attempt made."""
        now = _now()
        try:
            async with self._tx(write=True) as conn:
                await conn.execute(
                    insert(directory).values(
                        pseudonym=pseudonym,
                        jurisdiction=jurisdiction,
                        shard=shard,
                        placement_version=1,
                        state=PENDING,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            existing = await self.get(pseudonym)
            if existing is None:  # erased in between: try once more
                return await self.reserve(pseudonym, jurisdiction, shard)
            return existing
        return Placement(pseudonym, jurisdiction, shard, 1, PENDING)

    async def activate(self, pseudonym: str) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(
                update(directory)
                .where(directory.c.pseudonym == pseudonym, directory.c.state == PENDING)
                .values(state=ACTIVE, updated_at=_now())
            )

    async def remove(self, pseudonym: str) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(delete(directory).where(directory.c.pseudonym == pseudonym))

    async def count_by_shard(self) -> dict[str, int]:
        async with self._tx(write=False) as conn:
            rows = await conn.execute(
                select(directory.c.shard, func.count())
                .where(directory.c.state != PENDING)
                .group_by(directory.c.shard)
            )
            return {shard: count for shard, count in rows}

    # -- API keys ----------------------------------------------------------------------------

    async def create_key(self, name: str, scopes: AbstractSet[str]) -> NewKey:
        unknown = set(scopes) - SCOPES
        if unknown:
            raise ValueError(f"unknown scope {sorted(unknown)[0]!r}")
        if not scopes:
            raise ValueError("a key needs at least one scope")
        key_id = secrets.token_hex(8)
        secret = f"dmk_{key_id}_{secrets.token_urlsafe(32).replace('_', '-')}"
        async with self._tx(write=True) as conn:
            await conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    secret_sha256=hash_secret(secret),
                    scopes=" ".join(sorted(scopes)),
                    created_at=_now(),
                )
            )
        return NewKey(key_id, secret)

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        if row is None:
            return None
        return ApiKey(
            row.key_id,
            row.name,
            frozenset(row.scopes.split()),
            row.secret_sha256,
            row.revoked_at is not None,
        )

    async def count_keys(self) -> int:
        async with self._tx(write=False) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
            )


def secret_matches(key: ApiKey, token: str) -> bool:
    return hmac.compare_digest(key.secret_sha256, hash_secret(token))
