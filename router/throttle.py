"""Failed authentications, throttled per client address, so that keys cannot be guessed online
at full speed: after ``limit`` failures within a minute (a fixed window, the clock's minute), the
address is answered 429 with ``Retry-After`` until the minute is over, whatever key it presents.

The count is kept in Redis when one is configured, so every router shares it; in the process
otherwise, and while Redis cannot be reached (each router then counts alone)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("domicile.auth")

WINDOW = 60
#: Failed authentications per address and minute before 429: ``[api]``'s default.
AUTH_FAILURES_PER_MINUTE = 30
#: Addresses counted in the process before windows past are dropped.
_LOCAL_MAX = 10_000


class LocalFailures:
    """Failures per (window, address), in the process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], int] = {}

    def count(self, window: int, address: str) -> int:
        return self._counts.get((window, address), 0)

    def add(self, window: int, address: str) -> None:
        if len(self._counts) > _LOCAL_MAX:
            self._counts = {k: n for k, n in self._counts.items() if k[0] >= window}
        self._counts[(window, address)] = self._counts.get((window, address), 0) + 1


class RedisFailures:
    """Failures per (window, address) in Redis, each key expiring after its window."""

    def __init__(self, url: str, namespace: str, ca: Path | None = None) -> None:
        tls = {"ssl_ca_certs": str(ca)} if ca is not None else {}
        self._redis = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=0.5, **tls
        )
        self._prefix = f"domicile:{namespace}:auth-failures:"

    def _key(self, window: int, address: str) -> str:
        return f"{self._prefix}{window}:{address}"

    async def count(self, window: int, address: str) -> int:
        return int(await self._redis.get(self._key(window, address)) or 0)

    async def add(self, window: int, address: str) -> None:
        key = self._key(window, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()


class AuthThrottle:
    def __init__(
        self,
        limit: int,
        shared: RedisFailures | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self._shared = shared
        self._local = LocalFailures()
        self._clock = clock
        self._redis_down = False

    async def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        now = self._clock()
        window = int(now // WINDOW)
        if await self._count(window, address) < self.limit:
            return None
        return max(1, math.ceil((window + 1) * WINDOW - now))

    async def failed(self, address: str) -> None:
        window = int(self._clock() // WINDOW)
        if self._shared is not None:
            try:
                await self._shared.add(window, address)
                self._recovered()
                return
            except RedisError as exc:
                self._down(exc)
        self._local.add(window, address)

    async def _count(self, window: int, address: str) -> int:
        if self._shared is not None:
            try:
                shared = await self._shared.count(window, address)
                self._recovered()
                return max(shared, self._local.count(window, address))
            except RedisError as exc:
                self._down(exc)
        return self._local.count(window, address)

    def _down(self, exc: RedisError) -> None:
        if not self._redis_down:
            log.warning("redis unreachable (%s): failed authentications counted per router", exc)
        self._redis_down = True

    def _recovered(self) -> None:
        if self._redis_down:
            log.warning("redis is available again: failed authentications counted there again")
        self._redis_down = False

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()
