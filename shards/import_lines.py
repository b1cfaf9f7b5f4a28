"""The input of ``domicile import``: one subject per JSON line,
``{"subject_id", "jurisdiction", "lookups"?, "records": [{"collection", "key", "data"}]}``.

A line is parsed and checked whole before anything of it is written. A bad line raises
``InvalidInput`` whose message names the field or the record's position, never a value: rejects
files and terminals travel further than the data may.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from domicile.shards.errors import InvalidInput
from domicile.shards.policy import is_jurisdiction
from domicile.shards.store import encode_data
from domicile.shards.validation import validate_record_address, validate_subject_id

_FIELDS = frozenset({"subject_id", "jurisdiction", "lookups", "records"})
_REQUIRED = ("subject_id", "jurisdiction", "records")
_RECORD_FIELDS = frozenset({"collection", "key", "data"})


class RecordLine(NamedTuple):  # a tuple: an import reads millions
    collection: str
    key: str
    #: The stored form of the record's data (``store.encode_data``).
    stored: bytes


@dataclass(frozen=True)
class SubjectLine:
    subject_id: str
    jurisdiction: str
    lookups: Mapping[str, str]
    records: tuple[RecordLine, ...]


def parse_line(raw: bytes, *, max_record_bytes: int) -> SubjectLine:
    """One line of the input, checked as the API checks a registration and its record writes."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            "malformed_json", f"not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise _invalid_line("the line must be a JSON object")
    if not _FIELDS.issuperset(value) or not all(f in value for f in _REQUIRED):
        raise _invalid_line(
            "the line's fields are subject_id, jurisdiction and records (required) and lookups"
        )
    subject_id, jurisdiction = value["subject_id"], value["jurisdiction"]
    if not isinstance(subject_id, str):
        raise _invalid_line("subject_id must be a string")
    validate_subject_id(subject_id)
    if not isinstance(jurisdiction, str) or not is_jurisdiction(jurisdiction):
        raise InvalidInput(
            "invalid_jurisdiction",
            "jurisdiction must be an ISO 3166-1 alpha-2 country code (upper case)",
        )
    return SubjectLine(
        subject_id,
        jurisdiction,
        _lookups(value.get("lookups")),
        _records(value["records"], max_record_bytes),
    )


def _invalid_line(message: str) -> InvalidInput:
    return InvalidInput("invalid_line", message)


def _lookups(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput("invalid_lookups", "lookups must be an object of kind: string value")
    return value


def _records(value: Any, max_record_bytes: int) -> tuple[RecordLine, ...]:
    if not isinstance(value, list):
        raise InvalidInput("invalid_record", "records must be a list")
    parsed: list[RecordLine] = []
    seen: set[tuple[str, str]] = set()
    for n, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != _RECORD_FIELDS:
            raise InvalidInput(
                "invalid_record", f"record {n}: must be an object of collection, key and data"
            )
        collection, key, data = item["collection"], item["key"], item["data"]
        if not isinstance(collection, str) or not isinstance(key, str):
            raise InvalidInput("invalid_record", f"record {n}: collection and key are strings")
        try:
            validate_record_address(collection, key)
        except InvalidInput as exc:
            raise InvalidInput(exc.code, f"record {n}: {exc.message}") from None
        if not isinstance(data, dict):
            raise InvalidInput("invalid_record", f"record {n}: data must be a JSON object")
        if (collection, key) in seen:
            raise InvalidInput(
                "duplicate_record", f"record {n}: the subject has another record at its address"
            )
        seen.add((collection, key))
        stored = encode_data(data)
        if len(stored) > max_record_bytes:
            raise InvalidInput(
                "record_too_large",
                f"record {n}: its data exceeds the limit of {max_record_bytes} bytes",
            )
        parsed.append(RecordLine(collection, key, stored))
    return tuple(parsed)
