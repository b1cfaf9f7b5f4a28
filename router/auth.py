"""Bearer API keys with scopes. Verified keys are cached briefly so the hot path does not hit
the catalog on every request (a revoked key stops working within ``ttl`` seconds). Failed
authentications are counted, logged with the client's address and the key id given (never the
secret) and throttled per address (``router.throttle``); secrets are compared only as digests,
in constant time.

While the catalog is unreachable, a key verified within the last ``ttl + outage_grace`` seconds
keeps working (requests whose placement is cached go on being served, as the failure-mode
table says); a key never verified, or verified longer ago, gets 503 ``catalog_unavailable``.
Once the catalog answers again every key is checked afresh, so a revocation made meanwhile
takes effect at the first request after the outage."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from domicile.router.errors import ApiError
from domicile.router.throttle import AUTH_FAILURES_PER_MINUTE, AuthThrottle
from domicile.shards.api_keys import ApiKey, ApiKeys, hash_secret, parse_token, secret_matches
from domicile.shards.errors import CatalogUnavailable

log = logging.getLogger("domicile.auth")

#: How long past its cache time a verified key outlives a catalog outage.
OUTAGE_GRACE = 900.0

Failure = Literal["missing", "malformed", "unknown_key", "wrong_secret", "revoked"]
#: A key id as ``keys create`` makes them; anything else a client sends is not logged.
_KEY_ID = re.compile(r"[0-9a-f]{1,32}")


class Authenticator:
    def __init__(
        self,
        keys: ApiKeys,
        ttl: float = 30.0,
        outage_grace: float = OUTAGE_GRACE,
        throttle: AuthThrottle | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        """``throttle`` counts failures per client address; ``count`` is told each failure's
        reason, and ``"throttled"`` for each request refused with 429 (the metrics)."""
        self._keys = keys
        self._ttl = ttl
        self._grace = outage_grace
        self.throttle = throttle or AuthThrottle(AUTH_FAILURES_PER_MINUTE)
        self._count = count or (lambda _: None)
        # SHA-256 of the token -> (fresh until, key): kept past ``fresh until`` for the outage
        # grace. Keyed by digest, so no lookup ever compares secrets.
        self._verified: dict[str, tuple[float, ApiKey]] = {}
        # One catalog lookup per token at a time: when an entry expires under load, every
        # concurrent request of that client would otherwise take a catalog connection at once.
        self._verifying: dict[str, asyncio.Task[ApiKey | Failure]] = {}

    async def authenticate(self, header: str | None, address: str) -> ApiKey:
        token = header[7:].strip() if header and header.startswith("Bearer ") else None
        digest = hash_secret(token) if token else None
        hit = self._verified.get(digest) if digest else None
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        # Only what is verified afresh is throttled: a key verified already is no guess.
        wait = await self.throttle.retry_after(address)
        if wait is not None:
            self._count("throttled")
            raise ApiError(
                429,
                "too_many_failed_authentications",
                f"too many failed authentications from {address}; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        if token is None or digest is None:
            await self._failed(address, "missing", None)
            raise _unauthorized("missing bearer API key (Authorization: Bearer <key>)")
        lookup = self._verifying.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._verify(token, digest))
            self._verifying[digest] = lookup
            lookup.add_done_callback(lambda _: self._verifying.pop(digest, None))
        try:
            key = await asyncio.shield(lookup)
        except CatalogUnavailable:
            if hit is not None and time.monotonic() < hit[0] + self._grace:
                return hit[1]
            raise
        if isinstance(key, str):
            parsed = parse_token(token)
            await self._failed(address, key, parsed[0] if parsed else None)
            raise _unauthorized("invalid API key")
        return key

    async def _verify(self, token: str, digest: str) -> ApiKey | Failure:
        parsed = parse_token(token)
        key = await self._keys.get(parsed[0]) if parsed else None
        if key is None or not secret_matches(key, token) or key.revoked:
            self._verified.pop(digest, None)
            if parsed is None:
                return "malformed"
            if key is None:
                return "unknown_key"
            return "revoked" if secret_matches(key, token) else "wrong_secret"
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[digest] = (time.monotonic() + self._ttl, key)
        return key

    async def _failed(self, address: str, reason: Failure, key_id: str | None) -> None:
        """Count, log (the address and the key id, never the secret) and throttle."""
        self._count(reason)
        shown = f" (key id {key_id})" if key_id and _KEY_ID.fullmatch(key_id) else ""
        log.warning("authentication failed from %s: %s%s", address, reason, shown)
        await self.throttle.failed(address)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


async def authorize(request: Request, scope: str) -> ApiKey:
    """The caller's key, which must hold ``scope``; remembered as the request's actor."""
    authenticator: Authenticator = request.app.state.authenticator
    address = request.client.host if request.client else "unknown"
    key = await authenticator.authenticate(request.headers.get("authorization"), address)
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
