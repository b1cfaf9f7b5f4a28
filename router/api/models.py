"""Response and request shapes, for validation of inputs and an accurate OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class RegisterSubject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str
    jurisdiction: str


class SubjectPlacementOut(BaseModel):
    subject_id: str
    jurisdiction: str
    region: str
    country: str
    shard: str


class RecordMeta(BaseModel):
    subject_id: str
    collection: str
    key: str
    version: int
    jurisdiction: str
    region: str
    shard: str
    content_sha256: str


class RecordOut(RecordMeta):
    data: dict[str, Any]


class RecordList(BaseModel):
    items: list[RecordOut]
    next_cursor: str | None


class ExportedRecord(BaseModel):
    collection: str
    key: str
    version: int
    content_sha256: str
    data: dict[str, Any]


class SubjectExport(SubjectPlacementOut):
    exported_at: str
    records: list[ExportedRecord]


class ShardOut(BaseModel):
    name: str
    region: str
    country: str
    health: str = Field(description="up, read_only (reads served, writes refused) or down")
    cause: str | None = Field(description="why it is not up: unreachable, timeout, ...")
    reason: str | None = Field(description="the cause as a sentence, with what to do")
    schema_revision: str | None
    head_revision: str
    subjects: int | None
    records: int | None


class ShardList(BaseModel):
    shards: list[ShardOut]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}
