"""Directory caches: an in-process LRU, optionally backed by Redis shared by every router.

A placement change deletes the Redis entry and publishes the pseudonym; every router evicts it
from its LRU. A stale entry can still slip through (a lost message, Redis down): the shard's own
fence (``subjects.state``) refuses it and the caller re-resolves from the catalog, so a stale
cache costs a retry, never a misrouted write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domicile.shards.faults import Cause, Fault, classify
from domicile.shards.placements import Placement
from domicile.shards.states import PlacementState

log = logging.getLogger("domicile.cache")


class PlacementCache(Protocol):
    async def get(self, pseudonym: str) -> Placement | None: ...
    async def put(self, placement: Placement) -> None: ...
    async def invalidate(self, pseudonym: str) -> None: ...
    async def invalidate_many(self, pseudonyms: Sequence[str]) -> None: ...
    async def close(self) -> None: ...


class LocalCache:
    """A bounded LRU with a TTL, for one process."""

    def __init__(self, capacity: int = 100_000, ttl: float = 300.0) -> None:
        self._entries: OrderedDict[str, tuple[float, Placement]] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl

    def peek(self, pseudonym: str) -> Placement | None:
        entry = self._entries.get(pseudonym)
        if entry is None:
            return None
        expires, placement = entry
        if expires < time.monotonic():
            del self._entries[pseudonym]
            return None
        self._entries.move_to_end(pseudonym)
        return placement

    def store(self, placement: Placement) -> None:
        self._entries[placement.pseudonym] = (time.monotonic() + self._ttl, placement)
        self._entries.move_to_end(placement.pseudonym)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def evict(self, pseudonym: str) -> None:
        self._entries.pop(pseudonym, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, pseudonym: str) -> Placement | None:
        return self.peek(pseudonym)

    async def put(self, placement: Placement) -> None:
        self.store(placement)

    async def invalidate(self, pseudonym: str) -> None:
        self.evict(pseudonym)

    async def invalidate_many(self, pseudonyms: Sequence[str]) -> None:
        for pseudonym in pseudonyms:
            self.evict(pseudonym)

    async def close(self) -> None:
        self.clear()


def _encode(p: Placement) -> str:
    return f"{p.jurisdiction} {p.shard} {p.version} {p.state}"


def _decode(pseudonym: str, raw: str) -> Placement:
    jurisdiction, shard, version, state = raw.split(" ")
    return Placement(pseudonym, jurisdiction, shard, int(version), PlacementState(state))


class RedisCache:
    """LRU in front of Redis; pub/sub keeps every router's LRU in step."""

    def __init__(self, url: str, namespace: str, ttl: int = 3600, ca: Path | None = None) -> None:
        # A rediss:// url is TLS, its certificate checked against ``ca`` (else the system's).
        tls = {"ssl_ca_certs": str(ca)} if ca is not None else {}
        self._redis = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=0.5, **tls
        )
        self._prefix = f"domicile:{namespace}:placement:"
        self._channel = f"domicile:{namespace}:invalidate"
        self._ttl = ttl
        self._local = LocalCache()
        #: Why Redis is not being used now; None while it is.
        self.fault: Fault | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="domicile-cache-invalidation")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=1.0)

    def _failed(self, exc: Exception) -> None:
        fault = classify(exc) or Fault(Cause.UNREACHABLE, type(exc).__name__)
        if self.fault is None or self.fault.cause != fault.cause:  # once per outage and cause
            log.warning(
                "redis %s; placements are read from the catalog until it is back",
                fault.reason,
            )
        self.fault = fault

    def _recovered(self) -> None:
        if self.fault is not None:
            self.fault = None
            log.warning("redis is available again; placements are cached there again")

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Messages may have been missed while unsubscribed: start from a clean LRU.
                self._local.clear()
                self._subscribed.set()
                self._recovered()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._local.evict(str(message["data"]))
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                self._failed(exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def get(self, pseudonym: str) -> Placement | None:
        if self._subscribed.is_set():
            hit = self._local.peek(pseudonym)
            if hit is not None:
                return hit
        try:
            raw = await self._redis.get(self._prefix + pseudonym)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        if raw is None:
            return None
        placement = _decode(pseudonym, str(raw))
        self._local.store(placement)
        return placement

    async def put(self, placement: Placement) -> None:
        self._local.store(placement)
        try:
            await self._redis.set(
                self._prefix + placement.pseudonym, _encode(placement), ex=self._ttl
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def invalidate(self, pseudonym: str) -> None:
        await self.invalidate_many([pseudonym])

    async def invalidate_many(self, pseudonyms: Sequence[str]) -> None:
        """Drop the entries here, in Redis and in every router's LRU: one round trip (a move's
        switch invalidates a whole chunk inside its write pause)."""
        if not pseudonyms:
            return
        for pseudonym in pseudonyms:
            self._local.evict(pseudonym)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(*(self._prefix + p for p in pseudonyms))
                for pseudonym in pseudonyms:
                    pipe.publish(self._channel, pseudonym)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()
