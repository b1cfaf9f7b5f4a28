"""Response and request shapes, for validation of inputs and an accurate OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(
        description="stable snake_case code of the error (docs/architecture.md lists them)"
    )
    message: str = Field(description="a sentence naming the problem, for a person")


class ErrorBody(BaseModel):
    """Every error answer: the status, and this body."""

    error: ErrorDetail


class RegisterSubject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str
    jurisdiction: str
    lookups: dict[str, str] | None = Field(
        default=None,
        description="lookup keys by kind (e.g. email): all or nothing, a value another "
        "subject holds refuses the registration (409 `lookup_taken`)",
    )


class LookupValueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(description="the value, as the user gave it: normalised by its kind")


class LookupOut(BaseModel):
    subject_id: str
    kind: str


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
    lookups: dict[str, str] = Field(description="the subject's lookup keys by kind, as given")


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


#: What each error status means here, with the codes it carries (docs/architecture.md).
ERROR_STATUSES: dict[int, str] = {
    401: "no API key, or an invalid or revoked one (`unauthorized`)",
    403: "the API key lacks the operation's scope (`forbidden`)",
    404: "the subject, record, log or move does not exist, or no subject holds the lookup "
    "value (`subject_not_found`, `record_not_found`, `log_not_found`, `move_not_found`)",
    409: "conflicts with what is stored (`jurisdiction_conflict`, `lookup_taken`, "
    "`relocation_required`, `residency_guard`, `already_placed`)",
    412: "`If-Match` names another version than the record's (`version_mismatch`)",
    413: "the record is larger than `[api] max_record_bytes` (`record_too_large`)",
    415: "the body is not `application/json` (`unsupported_media_type`)",
    422: "invalid input (`invalid_request`, `malformed_json`, `invalid_body`, "
    "`invalid_subject_id`, `invalid_jurisdiction`, `invalid_collection`, `invalid_key`, "
    "`invalid_cursor`, `invalid_if_match`, `invalid_purpose`, `out_of_range`, "
    "`unknown_lookup_kind`, `invalid_lookup`), or a subject "
    "the policy permits in no region (`no_permitted_region`)",
    429: "too many failed authentications from the client's address this minute "
    "(`too_many_failed_authentications`, `[api] auth_failures_per_minute`): retry after "
    "`Retry-After` seconds",
    503: "a shard or the catalog is unavailable, or the subject is being moved "
    "(`shard_unavailable`, `catalog_unavailable`, `subject_moving`, …): retry after "
    "`Retry-After` seconds",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer"},
    }
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def error_response(status: int) -> dict[str, Any]:
    """One error status as an OpenAPI response: its meaning, the body and its headers."""
    response: dict[str, Any] = {"model": ErrorBody, "description": ERROR_STATUSES[status]}
    if status in _ERROR_HEADERS:
        response["headers"] = _ERROR_HEADERS[status]
    return response


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: error_response(status) for status in statuses}
