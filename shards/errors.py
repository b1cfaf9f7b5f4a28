"""Domain errors. Each carries a stable snake_case ``code``; the HTTP layer maps them to
status codes in one place (``router.errors``) and the CLI to exit codes."""

from __future__ import annotations

from domicile.audit.errors import LogUnavailable
from domicile.shards.faults import UNREACHABLE, Fault


class DomicileError(Exception):
    code = "domicile_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(DomicileError):
    code = "invalid_input"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NoPermittedRegion(DomicileError):
    code = "no_permitted_region"

    def __init__(self, jurisdiction: str) -> None:
        super().__init__(f"the residency policy permits no region for jurisdiction {jurisdiction}")
        self.jurisdiction = jurisdiction


class SubjectNotFound(DomicileError):
    code = "subject_not_found"

    def __init__(self, message: str = "no such subject") -> None:
        super().__init__(message)


class RecordNotFound(DomicileError):
    code = "record_not_found"

    def __init__(self) -> None:
        super().__init__("no such record")


class JurisdictionConflict(DomicileError):
    code = "jurisdiction_conflict"

    def __init__(self, registered: str, requested: str) -> None:
        super().__init__(f"subject is registered with jurisdiction {registered}, not {requested}")


class LookupTaken(DomicileError):
    code = "lookup_taken"

    def __init__(self, kind: str) -> None:
        super().__init__(f"another subject holds this {kind} value")
        self.kind = kind


class LookupNotFound(SubjectNotFound):
    """No subject holds the value looked up: answered as an unknown subject."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"no subject holds this {kind} value")


class VersionMismatch(DomicileError):
    code = "version_mismatch"

    def __init__(self, expected: int, current: int | None) -> None:
        now = "does not exist" if current is None else f"is at version {current}"
        super().__init__(f"If-Match expected version {expected} but the record {now}")


class PlacementNotPermitted(DomicileError):
    """The subject's home shard is no longer permitted by the policy: it awaits relocation."""

    code = "relocation_required"

    def __init__(self, jurisdiction: str, shard: str) -> None:
        super().__init__(
            f"the policy no longer permits shard {shard} for jurisdiction {jurisdiction}; "
            "writes resume once `domicile comply` has moved the subject"
        )


class ResidencyGuardViolation(DomicileError):
    """A shard's own guard refused a row: the router's view and the shard disagree."""

    code = "residency_guard"

    def __init__(self, shard: str) -> None:
        super().__init__(f"shard {shard} refused a row whose jurisdiction it may not hold")


class Unavailable(DomicileError):
    """Retryable: the caller should try again after ``retry_after`` seconds."""

    code = "unavailable"
    retry_after = 1


class ShardUnavailable(Unavailable):
    """The shard cannot serve now; the code names the cause (``shard_unreachable``,
    ``shard_read_only``, ...) and the message what to do about it."""

    code = "shard_unavailable"

    def __init__(self, shard: str, fault: Fault = UNREACHABLE) -> None:
        super().__init__(f"shard {shard} {fault.reason}")
        self.shard = shard
        self.fault = fault
        self.code = f"shard_{fault.cause}"


class ShardLogUnavailable(ShardUnavailable, LogUnavailable):
    """The shard holding a log is unavailable: audit's `LogUnavailable`, and still the shard's
    error (its code, message and ``retry_after``) for the HTTP and CLI answers."""


class CatalogUnavailable(Unavailable):
    code = "catalog_unavailable"

    def __init__(self, fault: Fault = UNREACHABLE) -> None:
        super().__init__(f"the catalog database {fault.reason}")
        self.fault = fault


class SubjectMoving(Unavailable):
    code = "subject_moving"

    def __init__(self) -> None:
        super().__init__("the subject is being moved between shards; retry shortly")


class RelocationDeferred(Unavailable):
    """A write needs its subject moved first (placement rule 8), and the move cannot be made
    now; it stays journaled, and the next write or `domicile comply` finishes it."""

    code = "relocation_deferred"

    def __init__(self, target: str, error: str | None) -> None:
        why = f" ({error})" if error else ""
        super().__init__(
            f"the policy in effect needs the subject moved to shard {target} before this "
            f"write, and the move cannot be made now{why}; retry shortly"
        )


class NotHome(DomicileError):
    """The shard is not (or no longer) the subject's home: re-resolve the placement."""

    code = "not_home"
    retry_after = 1  # the router re-resolves once; a caller that still sees it retries

    def __init__(self, shard: str) -> None:
        super().__init__(f"shard {shard} is not the subject's home")
        self.shard = shard


class MovedAway(NotHome):
    """The subject has been switched to another shard; this one's copy awaits its purge."""

    code = "not_home"


class MigrationFailed(DomicileError):
    """A schema migration could not be planned or applied."""

    code = "migration_failed"


class MoveRefused(InvalidInput):
    """The move is not allowed (unknown shard, or a shard the policy does not permit)."""

    def __init__(self, message: str) -> None:
        super().__init__("move_refused", message)


class AlreadyPlaced(DomicileError):
    code = "already_placed"

    def __init__(self, shard: str) -> None:
        super().__init__(f"the subject is already on shard {shard}")
        self.shard = shard


class MoveStuck(DomicileError):
    code = "move_stuck"

    def __init__(self) -> None:
        super().__init__(
            "the subject's directory entry changed while it was fenced; an operator must look "
            "(see docs/operations.md)"
        )


class MoveInProgress(Unavailable):
    code = "move_in_progress"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class LeaseLost(DomicileError):
    """A run's moves were taken over by another run (its lease expired meanwhile)."""

    code = "lease_lost"

    def __init__(self) -> None:
        super().__init__("another run took over these moves; this run stopped touching them")


class BulkWriteFailed(DomicileError):
    code = "bulk_write_failed"

    def __init__(self, shard: str, exc: Exception) -> None:
        super().__init__(f"shard {shard} refused the copied rows ({type(exc).__name__})")
        self.shard = shard
