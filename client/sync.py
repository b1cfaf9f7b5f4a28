"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
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


class Client:
    """``Client(base_url, api_key=…)``: the API's operations as methods. Use it as a context
    manager, or ``close()`` it; one instance is safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = session_options(base_url, api_key, timeout)
        self._http = httpx.Client(**options, transport=transport)
        self._retry = retry

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            response = self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
            if response.is_success:
                return call.read(response)
            wait = self._retry.delay(response, attempt)
            if wait is None:
                raise error_from(response)
            time.sleep(wait)
            attempt += 1

    def register(
        self,
        subject_id: str,
        jurisdiction: str,
        lookups: Mapping[str, str] | None = None,
        *,
        purpose: str | None = None,
    ) -> Registration:
        return self._send(calls.register(subject_id, jurisdiction, lookups, purpose))

    def placement(self, subject_id: str) -> Placement:
        return self._send(calls.placement(subject_id))

    def erase(self, subject_id: str, *, purpose: str | None = None) -> None:
        self._send(calls.erase(subject_id, purpose))

    def export(self, subject_id: str) -> Export:
        return self._send(calls.export(subject_id))

    def put_record(
        self,
        subject_id: str,
        collection: str,
        key: str,
        data: Mapping[str, Any],
        if_match: int | str | None = None,
        *,
        purpose: str | None = None,
    ) -> RecordMeta:
        return self._send(calls.put_record(subject_id, collection, key, data, if_match, purpose))

    def get_record(self, subject_id: str, collection: str, key: str) -> Record:
        return self._send(calls.get_record(subject_id, collection, key))

    def delete_record(
        self,
        subject_id: str,
        collection: str,
        key: str,
        if_match: int | str | None = None,
        *,
        purpose: str | None = None,
    ) -> None:
        self._send(calls.delete_record(subject_id, collection, key, if_match, purpose))

    def list_records(
        self, subject_id: str, collection: str | None = None, *, page_size: int = 100
    ) -> Iterator[Record]:
        """Every record of the subject (of one collection, if given), page after page. The first
        page is read at once, so an unknown subject raises here rather than when iterated."""
        page = self._send(calls.list_records(subject_id, collection, page_size, None))

        def pages() -> Iterator[Record]:
            current = page
            while True:
                yield from current.items
                if current.next_cursor is None:
                    return
                current = self._send(
                    calls.list_records(subject_id, collection, page_size, current.next_cursor)
                )

        return pages()

    def set_lookup(
        self, subject_id: str, kind: str, value: str, *, purpose: str | None = None
    ) -> Lookup:
        return self._send(calls.set_lookup(subject_id, kind, value, purpose))

    def remove_lookup(self, subject_id: str, kind: str, *, purpose: str | None = None) -> None:
        self._send(calls.remove_lookup(subject_id, kind, purpose))

    def lookup(self, kind: str, value: str) -> Placement:
        return self._send(calls.lookup(kind, value))
