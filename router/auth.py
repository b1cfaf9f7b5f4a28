"""Bearer API keys with scopes. Verified keys are cached briefly so the hot path does not hit
the catalog on every request (a revoked key stops working within ``ttl`` seconds)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from domicile.router.errors import ApiError
from domicile.shards.api_keys import ApiKey, ApiKeys, parse_token, secret_matches


class Authenticator:
    def __init__(self, keys: ApiKeys, ttl: float = 30.0) -> None:
        self._keys = keys
        self._ttl = ttl
        self._verified: dict[str, tuple[float, ApiKey]] = {}
        # One catalog lookup per token at a time: when an entry expires under load, every
        # concurrent request of that client would otherwise take a catalog connection at once.
        self._verifying: dict[str, asyncio.Task[ApiKey | None]] = {}

    async def authenticate(self, header: str | None) -> ApiKey:
        if not header or not header.startswith("Bearer "):
            raise _unauthorized("missing bearer API key (Authorization: Bearer <key>)")
        token = header[7:].strip()
        hit = self._verified.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        lookup = self._verifying.get(token)
        if lookup is None:
            lookup = asyncio.ensure_future(self._verify(token))
            self._verifying[token] = lookup
            lookup.add_done_callback(lambda _: self._verifying.pop(token, None))
        key = await asyncio.shield(lookup)
        if key is None:
            raise _unauthorized("invalid API key")
        return key

    async def _verify(self, token: str) -> ApiKey | None:
        parsed = parse_token(token)
        key = await self._keys.get(parsed[0]) if parsed else None
        if key is None or key.revoked or not secret_matches(key, token):
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (time.monotonic() + self._ttl, key)
        return key


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


def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    async def dependency(request: Request) -> ApiKey:
        return await authorize(request, scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


RecordsRead = Annotated[ApiKey, Depends(require("records:read"))]
RecordsWrite = Annotated[ApiKey, Depends(require("records:write"))]
SubjectsWrite = Annotated[ApiKey, Depends(require("subjects:write"))]
AuditRead = Annotated[ApiKey, Depends(require("audit:read"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]
