"""Audit events and their leaves: RFC 8785 (JCS) canonical JSON of the event, UTF-8.

Pseudonyms only: a leaf may be shipped to an auditor anywhere, so it never holds a raw subject
id, record key or content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

# Event names (the ``event`` field).
SUBJECT_REGISTERED = "subject.registered"
SUBJECT_ERASED = "subject.erased"
SUBJECT_MOVED_IN = "subject.moved_in"
SUBJECT_MOVED_OUT = "subject.moved_out"
RECORD_PUT = "record.put"
RECORD_DELETED = "record.deleted"
SCHEMA_MIGRATED = "schema.migrated"
POLICY_CHANGED = "policy.changed"
KEY_ROTATED = "key.rotated"
LOOKUP_SET = "lookup.set"  # with the kind and the blind value, never the value
LOOKUP_REMOVED = "lookup.removed"


@dataclass(frozen=True)
class Actor:
    """Who asked, and why: carried from the request into every entry it causes."""

    key_id: str | None = None
    purpose: str | None = None
    request_id: str | None = None


SYSTEM = Actor(key_id="system")


@dataclass(frozen=True)
class LogSite:
    """Where an entry is written: the log (= shard) and its region."""

    log: str
    region: str
    country: str


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def make_leaf(
    site: LogSite,
    event: str,
    actor: Actor,
    *,
    subject: str | None = None,
    jurisdiction: str | None = None,
    time: datetime | None = None,
    keep_null: frozenset[str] = frozenset(),
    **fields: Any,
) -> bytes:
    """The exact leaf bytes for one event; ``None`` fields are left out, but for those named in
    ``keep_null`` (a declared fact that is absent, written as such)."""
    body = _body(site, event, actor, time, subject=subject, jurisdiction=jurisdiction, **fields)
    return canonical_json({k: v for k, v in body.items() if v is not None or k in keep_null})


class LeafMaker:
    """``make_leaf`` for many events sharing their site, event, actor, time and some fields (a
    bulk import's, one per record): those are resolved once, so a leaf costs a merge and an
    encoding. ``maker(**fields)`` is ``make_leaf(site, event, actor, time=time, **shared,
    **fields)``."""

    def __init__(
        self, site: LogSite, event: str, actor: Actor, *, time: datetime, **shared: Any
    ) -> None:
        body = _body(site, event, actor, time, **shared)
        self._shared = {k: v for k, v in body.items() if v is not None}
        self._flat = _flat(self._shared)

    def __call__(self, **fields: Any) -> bytes:
        given = {k: v for k, v in fields.items() if v is not None}
        body = self._shared | given
        if self._flat and _flat(given):  # canonical_json, checking only what varies
            return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return canonical_json(body)


def _body(
    site: LogSite, event: str, actor: Actor, time: datetime | None, **fields: Any
) -> dict[str, Any]:
    return {
        "log": site.log,
        "time": rfc3339(time or datetime.now(UTC)),
        "event": event,
        "shard": site.log,
        "region": site.region,
        "country": site.country,
        "actor": actor.key_id,
        "purpose": actor.purpose,
        "request_id": actor.request_id,
        **fields,
    }


_SAFE_INT = 2**53  # JCS writes numbers as ES6 doubles: integers beyond this change form


def canonical_json(value: dict[str, Any]) -> bytes:
    """RFC 8785 bytes. Events are flat objects of ASCII keys with string and integer values,
    for which orjson's sorted compact output is byte-identical to JCS (strings unescaped but
    for '"', '\\' and control characters, integers in decimal) and ~80x faster than the
    general implementation, which every other value goes through."""
    if _flat(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return bytes(rfc8785.dumps(value))


def _flat(value: Mapping[str, Any]) -> bool:
    """Whether orjson's sorted output of ``value`` is its RFC 8785 form (``canonical_json``)."""
    for k, v in value.items():  # a loop: a third of the cost of two generators over them
        if not k.isascii():
            return False
        if not (isinstance(v, str) or (type(v) is int and -_SAFE_INT < v < _SAFE_INT)):
            return False
    return True


def decode_leaf(leaf: bytes) -> Mapping[str, Any]:
    decoded: Mapping[str, Any] = json.loads(leaf)
    return decoded
