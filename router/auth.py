"""Bearer API keys with scopes. Verified keys are cached briefly so the hot path does not hit
the catalog on every request. A revoked key is forgotten at once by every router that hears the
revocation (all of them with Redis, ``shards.key_revocations``); one that does not hear it stops
accepting the key within ``ttl`` seconds.

A key's last use is written to the catalog at most once per ``USE_RECORD_INTERVAL`` per key and
process, in the background: never a catalog write per request.

While the catalog is unreachable, a key verified within the last ``ttl + outage_grace`` seconds
keeps working (requests whose placement is cached go on being served, as the failure-mode
table says); a key never verified, or verified longer ago, gets 503 ``catalog_unavailable``.
Once the catalog answers again every key is checked afresh, so a revocation made meanwhile
takes effect at the first request after the outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from domicile.router.errors import ApiError
from domicile.shards.api_keys import ApiKey, ApiKeys, parse_token, secret_matches
from domicile.shards.errors import CatalogUnavailable, DomicileError

log = logging.getLogger("domicile.keys")

#: How long past its cache time a verified key outlives a catalog outage.
OUTAGE_GRACE = 900.0
#: Seconds between two writes of one key's last use by one process.
USE_RECORD_INTERVAL = 60.0


class Authenticator:
    def __init__(
        self, keys: ApiKeys, ttl: float = 30.0, outage_grace: float = OUTAGE_GRACE
    ) -> None:
        self._keys = keys
        self._ttl = ttl
        self._grace = outage_grace
        # token -> (fresh until, key): kept past ``fresh until`` for the outage grace.
        self._verified: dict[str, tuple[float, ApiKey]] = {}
        # One catalog lookup per token at a time: when an entry expires under load, every
        # concurrent request of that client would otherwise take a catalog connection at once.
        self._verifying: dict[str, asyncio.Task[ApiKey | None]] = {}
        # Bumped by each revocation heard: a lookup that began before it caches nothing.
        self._generation = 0
        keys.revocations.listen(self.forget)
        self._use_recorded: dict[str, float] = {}
        self._unrecorded: set[str] = set()
        self._recorder: asyncio.Task[None] | None = None

    def forget(self, key_id: str | None) -> None:
        """Drop the cached verifications of a revoked key (of every key with None)."""
        self._generation += 1
        if key_id is None:
            self._verified.clear()
            return
        for token, (_, key) in list(self._verified.items()):
            if key.key_id == key_id:
                del self._verified[token]

    async def authenticate(self, header: str | None) -> ApiKey:
        if not header or not header.startswith("Bearer "):
            raise _unauthorized("missing bearer API key (Authorization: Bearer <key>)")
        token = header[7:].strip()
        hit = self._verified.get(token)
        if hit is not None and hit[0] > time.monotonic():
            self._used(hit[1])
            return hit[1]
        lookup = self._verifying.get(token)
        if lookup is None:
            lookup = asyncio.ensure_future(self._verify(token))
            self._verifying[token] = lookup
            lookup.add_done_callback(lambda _: self._verifying.pop(token, None))
        try:
            key = await asyncio.shield(lookup)
        except CatalogUnavailable:
            if hit is not None and time.monotonic() < hit[0] + self._grace:
                return hit[1]
            raise
        if key is None:
            raise _unauthorized("invalid API key")
        self._used(key)
        return key

    async def _verify(self, token: str) -> ApiKey | None:
        generation = self._generation
        parsed = parse_token(token)
        key = await self._keys.get(parsed[0]) if parsed else None
        if key is None or key.revoked or not secret_matches(key, token):
            self._verified.pop(token, None)
            return None
        if generation != self._generation:
            return key  # a revocation was heard meanwhile: serve this request, check the next
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (time.monotonic() + self._ttl, key)
        return key

    def _used(self, key: ApiKey) -> None:
        now = time.monotonic()
        if now - self._use_recorded.get(key.key_id, -USE_RECORD_INTERVAL) < USE_RECORD_INTERVAL:
            return
        self._use_recorded[key.key_id] = now
        self._unrecorded.add(key.key_id)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_uses(), name="domicile-key-uses")

    async def _record_uses(self) -> None:
        """One catalog write for the keys used since the last one, until none is left."""
        await asyncio.sleep(0)  # let the requests of this moment add their keys
        while self._unrecorded:
            used, self._unrecorded = self._unrecorded, set()
            try:
                await self._keys.record_use(used, datetime.now(UTC))
            except DomicileError as exc:  # the catalog is down: the next minute's use says it
                log.debug("last use of API keys not recorded: %s", exc)

    async def close(self) -> None:
        if self._recorder is not None:
            with contextlib.suppress(Exception):
                await self._recorder


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


async def authorize(request: Request, scope: str) -> ApiKey:
    """The caller's key, which must hold ``scope``; remembered as the request's actor."""
    authenticator: Authenticator = request.app.state.authenticator
    key = await authenticator.authenticate(request.headers.get("authorization"))
    if not key.allows(scope):
        raise ApiError(403, "forbidden", f"API key {key.key_id} lacks the scope {scope}")
    request.state.key_id = key.key_id
    return key


#: The API key as the OpenAPI document's bearer scheme. ``_key`` checks the header itself, as
#: the hot routes do (``authorize``); the scheme is read only so that routes declare it.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="an API key, `dmk_<key id>_<secret>` (`domicile keys create`); each operation "
    "names the scope it needs (`admin` implies every other)",
    auto_error=False,
)


async def _key(
    request: Request,
    needed: SecurityScopes,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> ApiKey:
    (scope,) = needed.scopes
    return await authorize(request, scope)


# ``Security`` rather than ``Depends``: the scope is then in the operation's security
# requirement, so what a route demands is what the OpenAPI document says.
RecordsRead = Annotated[ApiKey, Security(_key, scopes=["records:read"])]
RecordsWrite = Annotated[ApiKey, Security(_key, scopes=["records:write"])]
SubjectsWrite = Annotated[ApiKey, Security(_key, scopes=["subjects:write"])]
AuditRead = Annotated[ApiKey, Security(_key, scopes=["audit:read"])]
Admin = Annotated[ApiKey, Security(_key, scopes=["admin"])]
