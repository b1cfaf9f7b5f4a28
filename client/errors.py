"""One exception class per error code of the API, each with ``.code`` and ``.status``.

The API answers ``{"error": {"code", "message"}}`` with a status. ``error_from`` turns such an
answer into the class of its code; a code this client does not know (a newer server's) falls
back to the class of its status (``NotFound``, ``Unavailable``, …), and an unknown status to
``ApiError``, so a new code never breaks a caller that catches by status.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from time import time

import httpx

__all__ = [
    "AlreadyPlaced",
    "ApiError",
    "ArchiveConflict",
    "ArchiveError",
    "BadRequest",
    "BulkWriteFailed",
    "CatalogUnavailable",
    "Conflict",
    "Forbidden",
    "InternalError",
    "InvalidBody",
    "InvalidCheckpoint",
    "InvalidCollection",
    "InvalidConfig",
    "InvalidCursor",
    "InvalidIfMatch",
    "InvalidJurisdiction",
    "InvalidKey",
    "InvalidKeyRotation",
    "InvalidLookup",
    "InvalidNote",
    "InvalidProof",
    "InvalidPurpose",
    "InvalidRequest",
    "InvalidScope",
    "InvalidSubjectId",
    "JurisdictionConflict",
    "LeaseLost",
    "LogNotFound",
    "LogUnavailable",
    "LookupTaken",
    "MalformedJson",
    "MethodNotAllowed",
    "MigrationFailed",
    "MissingNodes",
    "MoveInProgress",
    "MoveInterrupted",
    "MoveNotFound",
    "MoveRefused",
    "MoveStuck",
    "NoPermittedRegion",
    "NotAcceptable",
    "NotFound",
    "NotHome",
    "OutOfRange",
    "PreconditionFailed",
    "RecordNotFound",
    "RecordTooLarge",
    "RelocationDeferred",
    "RelocationRequired",
    "ResidencyGuard",
    "ShardAuthFailed",
    "ShardDamaged",
    "ShardDatabaseMissing",
    "ShardDiskFull",
    "ShardIdentityMismatch",
    "ShardReadOnly",
    "ShardSchemaMissing",
    "ShardTimeout",
    "ShardTls",
    "ShardTooManyConnections",
    "ShardUnavailable",
    "ShardUnreachable",
    "SigningKeyUnavailable",
    "SourceUnreadable",
    "SubjectMoving",
    "SubjectNotFound",
    "TooLarge",
    "TooManyFailedAuthentications",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnknownLookupKind",
    "UnknownRevision",
    "UnsupportedMediaType",
    "VerificationFailed",
    "VersionMismatch",
    "WitnessStateUnreadable",
]


class ApiError(Exception):
    """An answer of the API other than success. ``retry_after`` is the seconds the server asked
    to wait (503 and 429 answers), ``request_id`` the server's id of the request, for its logs."""

    code: str = "api_error"
    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


# The classes of each status: the first is the status's own, which codes it has no class for
# fall back to.


class BadRequest(ApiError):
    code, status = "bad_request", 400


class Unauthorized(ApiError):
    """No API key, or one that is invalid or revoked."""

    code, status = "unauthorized", 401


class Forbidden(ApiError):
    """The API key lacks the scope the operation needs."""

    code, status = "forbidden", 403


class NotFound(ApiError):
    code, status = "not_found", 404


class SubjectNotFound(NotFound):
    code = "subject_not_found"


class RecordNotFound(NotFound):
    code = "record_not_found"


class LogNotFound(NotFound):
    code = "log_not_found"


class MoveNotFound(NotFound):
    code = "move_not_found"


class MethodNotAllowed(ApiError):
    code, status = "method_not_allowed", 405


class NotAcceptable(ApiError):
    code, status = "not_acceptable", 406


class Conflict(ApiError):
    code, status = "conflict", 409


class JurisdictionConflict(Conflict):
    """The subject is registered with another jurisdiction."""

    code = "jurisdiction_conflict"


class LookupTaken(Conflict):
    """Another subject holds that lookup value."""

    code = "lookup_taken"


class RelocationRequired(Conflict):
    """The policy no longer permits the subject's shard and the subject awaits a move."""

    code = "relocation_required"


class ResidencyGuard(Conflict):
    """A shard's own residency guard refused the row."""

    code = "residency_guard"


class AlreadyPlaced(Conflict):
    code = "already_placed"


class MoveStuck(Conflict):
    code = "move_stuck"


class LeaseLost(Conflict):
    code = "lease_lost"


class VerificationFailed(Conflict):
    code = "verification_failed"


class InvalidCheckpoint(Conflict):
    code = "invalid_checkpoint"


class InvalidProof(Conflict):
    code = "invalid_proof"


class InvalidKeyRotation(Conflict):
    code = "invalid_key_rotation"


class PreconditionFailed(ApiError):
    code, status = "precondition_failed", 412


class VersionMismatch(PreconditionFailed):
    """``If-Match`` named another version than the record's (or the record does not exist)."""

    code = "version_mismatch"


class TooLarge(ApiError):
    code, status = "too_large", 413


class RecordTooLarge(TooLarge):
    code = "record_too_large"


class UnsupportedMediaType(ApiError):
    code, status = "unsupported_media_type", 415


class TooManyRequests(ApiError):
    """429: the caller's address failed to authenticate too often this minute; ``retry_after``
    says when it may try again. Never retried: its key is most likely wrong."""

    code, status = "too_many_requests", 429


class TooManyFailedAuthentications(TooManyRequests):
    code = "too_many_failed_authentications"


class InvalidRequest(ApiError):
    """The request is invalid, or cannot be placed (422)."""

    code, status = "invalid_request", 422


class NoPermittedRegion(InvalidRequest):
    """The residency policy permits no region for the subject's jurisdiction: nothing stored."""

    code = "no_permitted_region"


class MalformedJson(InvalidRequest):
    code = "malformed_json"


class InvalidBody(InvalidRequest):
    code = "invalid_body"


class InvalidSubjectId(InvalidRequest):
    code = "invalid_subject_id"


class InvalidJurisdiction(InvalidRequest):
    code = "invalid_jurisdiction"


class InvalidCollection(InvalidRequest):
    code = "invalid_collection"


class InvalidKey(InvalidRequest):
    code = "invalid_key"


class InvalidLookup(InvalidRequest):
    """The lookup value does not normalise for its kind (not an e-mail address, say)."""

    code = "invalid_lookup"


class UnknownLookupKind(InvalidRequest):
    """The deployment declares no lookup kind of that name."""

    code = "unknown_lookup_kind"


class InvalidCursor(InvalidRequest):
    code = "invalid_cursor"


class InvalidIfMatch(InvalidRequest):
    code = "invalid_if_match"


class InvalidPurpose(InvalidRequest):
    code = "invalid_purpose"


class InvalidScope(InvalidRequest):
    code = "invalid_scope"


class UnknownRevision(InvalidRequest):
    code = "unknown_revision"


class MoveRefused(InvalidRequest):
    code = "move_refused"


class OutOfRange(InvalidRequest):
    code = "out_of_range"


class InvalidNote(InvalidRequest):
    code = "invalid_note"


class WitnessStateUnreadable(InvalidRequest):
    code = "witness_state_unreadable"


class InternalError(ApiError):
    code, status = "internal_error", 500


class InvalidConfig(InternalError):
    code = "invalid_config"


class MissingNodes(InternalError):
    code = "missing_nodes"


class Unavailable(ApiError):
    """Retryable: a shard, the catalog or the subject is not available now (503)."""

    code, status = "unavailable", 503


class ShardUnavailable(Unavailable):
    code = "shard_unavailable"


class ShardUnreachable(Unavailable):
    code = "shard_unreachable"


class ShardTimeout(Unavailable):
    code = "shard_timeout"


class ShardAuthFailed(Unavailable):
    code = "shard_auth_failed"


class ShardDatabaseMissing(Unavailable):
    code = "shard_database_missing"


class ShardSchemaMissing(Unavailable):
    code = "shard_schema_missing"


class ShardIdentityMismatch(Unavailable):
    code = "shard_identity_mismatch"


class ShardReadOnly(Unavailable):
    code = "shard_read_only"


class ShardDamaged(Unavailable):
    code = "shard_damaged"


class ShardDiskFull(Unavailable):
    code = "shard_disk_full"


class ShardTooManyConnections(Unavailable):
    code = "shard_too_many_connections"


class ShardTls(Unavailable):
    code = "shard_tls"


class RelocationDeferred(Unavailable):
    """The subject must move before this write and the move cannot be made now."""

    code = "relocation_deferred"


class CatalogUnavailable(Unavailable):
    code = "catalog_unavailable"


class SubjectMoving(Unavailable):
    """The subject is being moved between shards: its writes pause for a moment."""

    code = "subject_moving"


class NotHome(Unavailable):
    code = "not_home"


class MoveInProgress(Unavailable):
    code = "move_in_progress"


class MoveInterrupted(Unavailable):
    code = "move_interrupted"


class MigrationFailed(Unavailable):
    code = "migration_failed"


class BulkWriteFailed(Unavailable):
    code = "bulk_write_failed"


class LogUnavailable(Unavailable):
    code = "log_unavailable"


class SourceUnreadable(Unavailable):
    code = "source_unreadable"


class SigningKeyUnavailable(Unavailable):
    """The router lacks the key the log was rotated to (its key file not yet replaced)."""

    code = "signing_key_unavailable"


class ArchiveError(Unavailable):
    code = "archive_error"


class ArchiveConflict(ArchiveError):
    code = "archive_conflict"


def _classes(base: type[ApiError]) -> list[type[ApiError]]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *_classes(sub)]
    return found


#: Every class, by its code and, for the status's own class, by its status.
BY_CODE: dict[str, type[ApiError]] = {cls.code: cls for cls in _classes(ApiError)}
BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls for cls in ApiError.__subclasses__() if cls.__bases__ == (ApiError,)
}


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (RFC 9110: a number of seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an answer that is not a success."""
    status = response.status_code
    code, message = None, response.reason_phrase or f"HTTP {status}"
    try:
        body = response.json()
    except ValueError:  # not the API's answer (a proxy's page, say): classed by status alone
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code = detail.get("code") if isinstance(detail.get("code"), str) else None
        message = str(detail.get("message", message))
    cls = BY_CODE.get(code or "")
    if cls is None or cls.status != status:
        cls = BY_STATUS.get(status, ApiError)
    return cls(
        message,
        code=code or cls.code,
        status=status,
        retry_after=retry_after(response.headers),
        request_id=response.headers.get("x-request-id"),
    )
