"""Each API operation as a ``Call``: the request to send and how to read its answer. The sync and
async clients send the same calls, so they cannot differ in what they ask or how they read it.

Every operation here is safe to repeat, which is what lets the clients retry them on 503:
reads, ``PUT`` and ``DELETE`` are idempotent (a retried delete of a subject whose erasure was
interrupted completes it), a registration repeated is 200 with the same placement, and a
lookup is a read sent as ``POST`` only to keep the value out of the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from domicile.client.results import (
    Export,
    Lookup,
    Placement,
    Record,
    RecordMeta,
    RecordPage,
    Registration,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] | None = None


def _segment(value: str) -> str:
    # Everything escaped, dots too where they alone make the segment: "." and ".." would
    # otherwise be read as relative path steps.
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if escaped.strip(".") == "" else escaped


def _path(*parts: str) -> str:
    return "/v1/" + "/".join(_segment(p) for p in parts)


def _headers(purpose: str | None, if_match: int | str | None = None) -> dict[str, str]:
    headers = {}
    if purpose is not None:
        headers["X-Domicile-Purpose"] = purpose
    if if_match is not None:
        tag = str(if_match)
        headers["If-Match"] = tag if tag.startswith(('"', "W/")) else f'"{tag}"'
    return headers


def _nothing(_: httpx.Response) -> None:
    return None


def _record(subject_id: str, collection: str, key: str) -> str:
    return _path("subjects", subject_id, "records", collection, key)


def register(
    subject_id: str,
    jurisdiction: str,
    lookups: Mapping[str, str] | None,
    purpose: str | None,
) -> Call[Registration]:
    body: dict[str, Any] = {"subject_id": subject_id, "jurisdiction": jurisdiction}
    if lookups is not None:
        body["lookups"] = dict(lookups)
    return Call(
        "POST",
        "/v1/subjects",
        lambda r: Registration.of({**r.json(), "created": r.status_code == 201}),
        json=body,
        headers=_headers(purpose),
    )


def placement(subject_id: str) -> Call[Placement]:
    return Call("GET", _path("subjects", subject_id), lambda r: Placement.of(r.json()))


def erase(subject_id: str, purpose: str | None) -> Call[None]:
    return Call("DELETE", _path("subjects", subject_id), _nothing, headers=_headers(purpose))


def export(subject_id: str) -> Call[Export]:
    return Call("GET", _path("subjects", subject_id, "export"), lambda r: Export.of(r.json()))


def put_record(
    subject_id: str,
    collection: str,
    key: str,
    data: Mapping[str, Any],
    if_match: int | str | None,
    purpose: str | None,
) -> Call[RecordMeta]:
    return Call(
        "PUT",
        _record(subject_id, collection, key),
        lambda r: RecordMeta.of(r.json()),
        json=dict(data),
        headers=_headers(purpose, if_match),
    )


def get_record(subject_id: str, collection: str, key: str) -> Call[Record]:
    return Call("GET", _record(subject_id, collection, key), lambda r: Record.of(r.json()))


def delete_record(
    subject_id: str, collection: str, key: str, if_match: int | str | None, purpose: str | None
) -> Call[None]:
    return Call(
        "DELETE",
        _record(subject_id, collection, key),
        _nothing,
        headers=_headers(purpose, if_match),
    )


def list_records(
    subject_id: str, collection: str | None, page_size: int, cursor: str | None
) -> Call[RecordPage]:
    params: dict[str, str | int] = {"limit": page_size}
    if collection is not None:
        params["collection"] = collection
    if cursor is not None:
        params["cursor"] = cursor
    return Call(
        "GET",
        _path("subjects", subject_id, "records"),
        lambda r: RecordPage.of(r.json()),
        params=params,
    )


def set_lookup(subject_id: str, kind: str, value: str, purpose: str | None) -> Call[Lookup]:
    return Call(
        "PUT",
        _path("subjects", subject_id, "lookups", kind),
        lambda r: Lookup.of(r.json()),
        json={"value": value},
        headers=_headers(purpose),
    )


def remove_lookup(subject_id: str, kind: str, purpose: str | None) -> Call[None]:
    return Call(
        "DELETE",
        _path("subjects", subject_id, "lookups", kind),
        _nothing,
        headers=_headers(purpose),
    )


def lookup(kind: str, value: str) -> Call[Placement]:
    return Call(
        "POST", _path("lookups", kind), lambda r: Placement.of(r.json()), json={"value": value}
    )
