"""Rows of the shard tables as typed objects, for the code that moves whole rows (moves' copies).

Each type's fields are its table's columns, in the table's order (a test holds them to
``shards.schema``), so a row is also a tuple in column order: ``bulk`` writes it with the type's
field names as the column list.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class SubjectRow(NamedTuple):
    """A row of ``subjects``: a subject homed on the shard, or the fence of one that left."""

    pseudonym: str
    subject_id: str | None  # None once the subject has left
    jurisdiction: str
    state: str
    placement_version: int
    created_at: datetime
    updated_at: datetime


class RecordRow(NamedTuple):
    """A row of ``records``."""

    pseudonym: str
    collection: str
    key: str
    data: str  # the stored JSON text
    version: int
    jurisdiction: str
    content_sha256: str
    created_at: datetime
    updated_at: datetime


class LookupRow(NamedTuple):
    """A row of ``lookups``: a subject's lookup key."""

    pseudonym: str
    kind: str
    value: str  # as given: personal data, held by the home shard only
    normalized: str
    blind: str
    created_at: datetime
    updated_at: datetime
