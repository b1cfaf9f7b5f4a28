"""Revoked API keys announced to every process that caches verified keys.

With Redis, a revocation is published on the deployment's channel and every router forgets the
key at once. Without Redis only the revoking process hears it; the others stop accepting the key
when their cached verification expires (``router.auth.Authenticator``'s ``ttl``).

A listener is called with the revoked key's id, or with None when announcements may have been
missed (the subscription was lost and is back): it must then forget every key it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("domicile.keys")

Listener = Callable[[str | None], None]


class KeyRevocations(Protocol):
    def listen(self, listener: Listener) -> None: ...
    async def listening(self) -> None: ...
    async def announce(self, key_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalRevocations:
    """This process only."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def listening(self) -> None:
        """Return once announcements reach the listeners (or after a second of trying)."""

    async def announce(self, key_id: str) -> None:
        self._tell(key_id)

    def _tell(self, key_id: str | None) -> None:
        for listener in self._listeners:
            listener(key_id)

    async def close(self) -> None:
        self._listeners.clear()


class RedisRevocations(LocalRevocations):
    """Every process subscribed to the deployment's channel, this one included."""

    def __init__(self, url: str, namespace: str, ca: Path | None = None) -> None:
        super().__init__()
        tls = {"ssl_ca_certs": str(ca)} if ca is not None else {}
        self._redis = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=0.5, **tls
        )
        self._channel = f"domicile:{namespace}:keys-revoked"
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def listen(self, listener: Listener) -> None:
        super().listen(listener)
        if self._subscriber is None:  # a process that only announces never subscribes
            self._subscriber = asyncio.create_task(
                self._subscribe(), name="domicile-key-revocations"
            )

    async def listening(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=1.0)

    async def _subscribe(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                self._tell(None)  # what was announced while unsubscribed is unknown
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._tell(str(message["data"]))
            except (RedisError, OSError):
                self._subscribed.clear()  # the cache.py listener says that Redis is down
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def announce(self, key_id: str) -> None:
        self._tell(key_id)
        try:
            await self._redis.publish(self._channel, key_id)
        except (RedisError, OSError) as exc:
            log.warning(
                "API key %s is revoked, but Redis did not take the announcement (%s): other "
                "routers refuse it once their cached check expires",
                key_id,
                type(exc).__name__,
            )

    async def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscriber
        await super().close()
        await self._redis.aclose()
