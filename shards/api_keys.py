"""API keys, kept in the catalog: only each secret's SHA-256 is stored, never the secret.

Reached through an ``ApiKeys`` over the process's ``Catalog`` (``Runtime.api_keys``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import api_keys
from domicile.shards.engines import serialize_writers
from domicile.shards.errors import InvalidInput

SCOPES: frozenset[str] = frozenset(
    {"records:read", "records:write", "subjects:write", "audit:read", "admin"}
)


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


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random tokens, so a fast hash suffices (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``dmk_<key id>_<secret>`` -> (key id, token); None when it is not shaped like a key."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != "dmk" or not parts[1] or not parts[2]:
        return None
    return parts[1], token


def secret_matches(key: ApiKey, token: str) -> bool:
    return hmac.compare_digest(key.secret_sha256, hash_secret(token))


class ApiKeys:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def create(self, name: str, scopes: AbstractSet[str]) -> NewKey:
        new = await self._create(name, scopes, first=False)
        assert new is not None
        return new

    async def create_first(self, name: str, scopes: AbstractSet[str]) -> NewKey | None:
        """A key, only if the catalog holds none yet: of processes starting together on a new
        deployment, exactly one creates it (the others get None)."""
        return await self._create(name, scopes, first=True)

    async def _create(self, name: str, scopes: AbstractSet[str], *, first: bool) -> NewKey | None:
        unknown = set(scopes) - SCOPES
        if unknown:
            raise InvalidInput("invalid_scope", f"unknown scope {sorted(unknown)[0]!r}")
        if not scopes:
            raise InvalidInput("invalid_scope", "a key needs at least one scope")
        key_id = secrets.token_hex(8)
        secret = f"dmk_{key_id}_{secrets.token_urlsafe(32).replace('_', '-')}"
        async with self._catalog.transaction(write=True) as conn:
            if first:
                await serialize_writers(conn)
                if (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one():
                    return None
            await conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    secret_sha256=hash_secret(secret),
                    scopes=" ".join(sorted(scopes)),
                    created_at=datetime.now(UTC),
                )
            )
        return NewKey(key_id, secret)

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._catalog.transaction(write=False) as conn:
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

    async def count(self) -> int:
        async with self._catalog.transaction(write=False) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
            )
