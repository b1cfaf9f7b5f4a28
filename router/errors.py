"""Every error domicile raises, and what it answers: the HTTP status (the body carries the
error's own snake_case ``code``) and the CLI's exit code (1 a check or an operation failed, 2 bad
usage or input). One table for both, so the API and the CLI cannot disagree on what an error
means; ``tests/router/test_errors.py`` fails if an error class has no row.

The packages each have one error base: ``shards.errors.DomicileError``,
``audit.errors.AuditError`` and, here, ``RouterError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from domicile.audit import errors as a
from domicile.shards import errors as s


class RouterError(Exception):
    code = "router_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(RouterError, ValueError):
    """A configuration problem, phrased as ``<key>: <what is wrong>``."""

    code = "invalid_config"


class ApiError(RouterError):
    """An HTTP answer decided by a route itself (auth, body, headers), with its own status."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


@dataclass(frozen=True)
class Answer:
    status: int
    exit_code: int


#: Looked up along each error's class hierarchy, so a subclass answers as its nearest listed
#: ancestor; the three bases are deliberately absent (an error nobody placed is a defect).
ANSWERS: dict[type[Exception], Answer] = {
    # The caller's input
    s.InvalidInput: Answer(422, 2),
    s.NoPermittedRegion: Answer(422, 2),
    s.SubjectNotFound: Answer(404, 2),
    s.RecordNotFound: Answer(404, 2),
    a.UnknownLog: Answer(404, 2),
    a.ProofRangeError: Answer(422, 2),
    a.NoteError: Answer(422, 2),
    a.WitnessStateUnreadable: Answer(422, 2),
    a.SourceError: Answer(503, 2),
    ConfigError: Answer(500, 2),
    # The state of the data
    s.JurisdictionConflict: Answer(409, 1),
    s.LookupTaken: Answer(409, 1),
    s.PlacementNotPermitted: Answer(409, 1),
    s.ResidencyGuardViolation: Answer(409, 1),
    s.VersionMismatch: Answer(412, 1),
    s.AlreadyPlaced: Answer(409, 1),
    s.MoveStuck: Answer(409, 1),
    s.LeaseLost: Answer(409, 1),
    # Retryable: a shard, the catalog or a subject is not available now
    s.Unavailable: Answer(503, 1),
    s.NotHome: Answer(503, 1),
    a.LogUnavailable: Answer(503, 1),
    a.ArchiveError: Answer(503, 1),
    a.SigningKeyUnavailable: Answer(503, 1),
    # A part that cannot serve until an operator acts
    s.MigrationFailed: Answer(503, 1),
    s.BulkWriteFailed: Answer(503, 1),
    # A check that failed
    a.VerificationFailed: Answer(409, 1),
    a.EvidenceInvalid: Answer(409, 1),
    a.CheckpointError: Answer(409, 1),
    a.ProofError: Answer(409, 1),
    a.RotationError: Answer(409, 1),
    a.MissingNodes: Answer(500, 1),
}


def answer_of(error: type[BaseException]) -> Answer | None:
    for kind in error.__mro__:
        found = ANSWERS.get(kind)
        if found is not None:
            return found
    return None


def exit_code_of(exc: BaseException) -> int:
    found = answer_of(type(exc))
    return 1 if found is None else found.exit_code
