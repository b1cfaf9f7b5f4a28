"""API keys, kept in the catalog: only each secret's SHA-256 is stored, never the secret.

Reached through an ``ApiKeys`` over the process's ``Catalog`` (``Runtime.api_keys``). Creating
and revoking a key are logged by key id (``domicile.keys``); a revocation is announced to every
process that caches verified keys (``shards.key_revocations``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Row, insert, select, update

from domicile.shards.catalog import Catalog
from domicile.shards.catalog_schema import api_keys
from domicile.shards.engines import serialize_writers
from domicile.shards.errors import ApiKeyNotFound, InvalidInput
from domicile.shards.key_revocations import KeyRevocations, LocalRevocations

log = logging.getLogger("domicile.keys")

SCOPES: frozenset[str] = frozenset(
    {"records:read", "records:write", "subjects:write", "audit:read", "admin"}
)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    secret_sha256: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

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
    def __init__(self, catalog: Catalog, revocations: KeyRevocations | None = None) -> None:
        self._catalog = catalog
        self.revocations = revocations or LocalRevocations()

    async def create(self, name: str, scopes: AbstractSet[str], by: str | None = None) -> NewKey:
        """A new key; ``by``: the key id of the admin who asked, for the log."""
        new = await self._create(name, scopes, first=False, by=by)
        assert new is not None
        return new

    async def create_first_admin(self, name: str) -> NewKey | None:
        """An admin key, only if the catalog has never held one (a revoked admin key counts:
        an operator who revoked it meant it): of processes starting together on a new
        deployment, exactly one creates it (the others get None)."""
        return await self._create(name, {"admin"}, first=True, by=None)

    async def _create(
        self, name: str, scopes: AbstractSet[str], *, first: bool, by: str | None
    ) -> NewKey | None:
        unknown = set(scopes) - SCOPES
        if unknown:
            raise InvalidInput("invalid_scope", f"unknown scope {sorted(unknown)[0]!r}")
        if not scopes:
            raise InvalidInput("invalid_scope", "a key needs at least one scope")
        if not name.strip() or len(name) > 128:
            raise InvalidInput("invalid_key_name", "a key's name is 1 to 128 characters")
        key_id = secrets.token_hex(8)
        secret = f"dmk_{key_id}_{secrets.token_urlsafe(32).replace('_', '-')}"
        async with self._catalog.transaction(write=True) as conn:
            if first:
                await serialize_writers(conn)
                rows = (await conn.execute(select(api_keys))).all()
                if any(_key(row).allows("admin") for row in rows):
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
        log.info(
            "API key %s created (%s; scopes %s)%s", key_id, name, " ".join(sorted(scopes)), _by(by)
        )
        return NewKey(key_id, secret)

    async def get(self, key_id: str) -> ApiKey | None:
        async with self._catalog.transaction(write=False) as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        return None if row is None else _key(row)

    async def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        async with self._catalog.transaction(write=False) as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [_key(row) for row in rows]

    async def revoke(self, key_id: str, by: str | None = None) -> ApiKey:
        """Revoke the key (a key revoked already stays as it was) and announce it."""
        async with self._catalog.transaction(write=True) as conn:
            revoked = await conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        if row is None:
            raise ApiKeyNotFound(key_id)
        key = _key(row)
        if revoked.rowcount:
            log.info("API key %s revoked (%s)%s", key.key_id, key.name, _by(by))
        await self.revocations.announce(key.key_id)
        return key

    async def record_use(self, key_ids: AbstractSet[str], when: datetime) -> None:
        """Set the keys' last use (callers batch it: it is a catalog write)."""
        async with self._catalog.transaction(write=True) as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.key_id.in_(key_ids)).values(last_used_at=when)
            )


def _by(key_id: str | None) -> str:
    return "" if key_id is None else f" by key {key_id}"


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        row.key_id,
        row.name,
        frozenset(row.scopes.split()),
        row.secret_sha256,
        _utc(row.created_at),
        _utc(row.revoked_at),
        _utc(row.last_used_at),
    )


@overload
def _utc(when: datetime) -> datetime: ...
@overload
def _utc(when: None) -> None: ...
def _utc(when: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for what was written in UTC.
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)
