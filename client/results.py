"""What the API answers, as typed values whose attributes are the contract's field names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self


class _Result:
    @classmethod
    def of(cls, body: dict[str, Any]) -> Self:
        """From a JSON answer, ignoring fields a newer server may add."""
        return cls(**{f.name: body[f.name] for f in fields(cls) if f.name in body})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Placement(_Result):
    """Where a subject lives."""

    subject_id: str
    jurisdiction: str
    region: str
    country: str
    shard: str


@dataclass(frozen=True)
class Registration(Placement):
    """A registration's placement; ``created`` is False when the subject was registered before."""

    created: bool = True


@dataclass(frozen=True)
class RecordMeta(_Result):
    """A record's place and version, as a write answers it."""

    subject_id: str
    collection: str
    key: str
    version: int
    jurisdiction: str
    region: str
    shard: str
    content_sha256: str


@dataclass(frozen=True)
class Record(RecordMeta):
    data: dict[str, Any]


@dataclass(frozen=True)
class RecordPage(_Result):
    items: list[Record]
    next_cursor: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Self:
        return cls([Record.of(item) for item in body["items"]], body.get("next_cursor"))


@dataclass(frozen=True)
class ExportedRecord(_Result):
    collection: str
    key: str
    version: int
    content_sha256: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Export(_Result):
    """Every record and lookup key of a subject, read in one snapshot (portability)."""

    subject_id: str
    jurisdiction: str
    region: str
    country: str
    shard: str
    exported_at: str
    records: list[ExportedRecord]
    lookups: dict[str, str] = field(default_factory=dict)  # kind -> value

    @classmethod
    def of(cls, body: dict[str, Any]) -> Self:
        records = [ExportedRecord.of(r) for r in body["records"]]
        return super().of({**body, "records": records})


@dataclass(frozen=True)
class Lookup(_Result):
    """A lookup key set on a subject (its value is never echoed back)."""

    subject_id: str
    kind: str
