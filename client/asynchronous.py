"""The asyncio client: the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from domicile.client import calls
from domicile.client.calls import Call
from domicile.client.errors import error_from
from domicile.client.results import Export, Lookup, Placement, Record, RecordMeta, Registration
from domicile.client.retry import DEFAULT_RETRY, Retry
from domicile.client.session import session_options

T = TypeVar("T")


class AsyncClient:
    """``AsyncClient(base_url, api_key=…)``: ``Client``'s methods as coroutines. Use it as an
    async context manager, or ``await close()``; share one instance within an event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = session_options(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(**options, transport=transport)
        self._retry = retry

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
            if response.is_success:
                return call.read(response)
            wait = self._retry.delay(response, attempt)
            if wait is None:
                raise error_from(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def register(
        self,
        subject_id: str,
        jurisdiction: str,
        lookups: Mapping[str, str] | None = None,
        *,
        purpose: str | None = None,
    ) -> Registration:
        return await self._send(calls.register(subject_id, jurisdiction, lookups, purpose))

    async def placement(self, subject_id: str) -> Placement:
        return await self._send(calls.placement(subject_id))

    async def erase(self, subject_id: str, *, purpose: str | None = None) -> None:
        await self._send(calls.erase(subject_id, purpose))

    async def export(self, subject_id: str) -> Export:
        return await self._send(calls.export(subject_id))

    async def put_record(
        self,
        subject_id: str,
        collection: str,
        key: str,
        data: Mapping[str, Any],
        if_match: int | str | None = None,
        *,
        purpose: str | None = None,
    ) -> RecordMeta:
        return await self._send(
            calls.put_record(subject_id, collection, key, data, if_match, purpose)
        )

    async def get_record(self, subject_id: str, collection: str, key: str) -> Record:
        return await self._send(calls.get_record(subject_id, collection, key))

    async def delete_record(
        self,
        subject_id: str,
        collection: str,
        key: str,
        if_match: int | str | None = None,
        *,
        purpose: str | None = None,
    ) -> None:
        await self._send(calls.delete_record(subject_id, collection, key, if_match, purpose))

    async def list_records(
        self, subject_id: str, collection: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[Record]:
        """Every record of the subject (of one collection, if given), page after page:
        ``async for record in client.list_records(...)``."""
        cursor = None
        while True:
            page = await self._send(calls.list_records(subject_id, collection, page_size, cursor))
            for record in page.items:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def set_lookup(
        self, subject_id: str, kind: str, value: str, *, purpose: str | None = None
    ) -> Lookup:
        return await self._send(calls.set_lookup(subject_id, kind, value, purpose))

    async def remove_lookup(
        self, subject_id: str, kind: str, *, purpose: str | None = None
    ) -> None:
        await self._send(calls.remove_lookup(subject_id, kind, purpose))

    async def lookup(self, kind: str, value: str) -> Placement:
        return await self._send(calls.lookup(kind, value))
