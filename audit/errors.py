"""Audit's errors: one base, each error with a stable snake_case ``code`` and a message naming
the problem. Callers map them to answers (HTTP status, exit code); audit maps nothing itself.

The errors about a bad value handed in stay ``ValueError`` too, as they were before they had a
base of their own: callers (the CLI's exit 2 for bad input) catch them by that base.
"""

from __future__ import annotations

from pathlib import Path


class AuditError(Exception):
    code = "audit_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NoteError(AuditError, ValueError):
    """A note, key or signature is malformed, or a note failed verification."""

    code = "invalid_note"


class CheckpointError(AuditError, ValueError):
    """A checkpoint is malformed or is not the one expected."""

    code = "invalid_checkpoint"


class RotationError(AuditError, ValueError):
    """A key rotation entry does not verify, or does not follow the log's chain of keys;
    ``index`` is the entry's, where known."""

    code = "invalid_key_rotation"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SigningKeyUnavailable(AuditError):
    """The log's chain of keys names a key this process does not hold (another process rotated
    and this one has not got the new key file), so it cannot sign the log's checkpoints."""

    code = "signing_key_unavailable"
    retry_after = 5

    def __init__(self, log: str, key: str) -> None:
        super().__init__(f"log {log} is signed with {key} from now on, a key this process lacks")
        self.log = log


class ProofError(AuditError, ValueError):
    """A Merkle proof failed to verify, or its inputs are malformed."""

    code = "invalid_proof"


class ProofRangeError(AuditError, ValueError):
    """A proof or entry range the log cannot serve (an index or size beyond the tree)."""

    code = "out_of_range"


class MissingNodes(AuditError, ValueError):
    """The stored tree lacks nodes that a root or a proof is made of."""

    code = "missing_nodes"


class UnknownLog(AuditError):
    code = "log_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no audit log named {name!r}")
        self.name = name


class LogUnavailable(AuditError):
    """Retryable: the log's store cannot be reached now."""

    code = "log_unavailable"
    retry_after = 1


class ArchiveError(AuditError):
    """The archive cannot be written as required (no Object Lock, conflicting content)."""

    code = "archive_error"


class ArchiveConflict(ArchiveError):
    code = "archive_conflict"

    def __init__(self, location: str, key: str) -> None:
        super().__init__(f"{location}: {key} is already archived with different content")


class SourceError(AuditError):
    """The source cannot be read (unreachable, refused, malformed): nothing was verified."""

    code = "source_unreadable"


class VerificationFailed(AuditError):
    """A log failed verification; ``index`` is the first entry that could not be verified."""

    code = "verification_failed"

    def __init__(self, log: str, message: str, index: int | None = None) -> None:
        where = f"log {log}" if index is None else f"log {log}, entry {index}"
        super().__init__(f"{where}: {message}")
        self.log = log
        self.index = index


class WitnessStateUnreadable(AuditError, ValueError):
    code = "witness_state_unreadable"

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"witness state {path} is not readable: {reason}")
        self.path = path


class EvidenceInvalid(AuditError):
    """An evidence pack does not hold: the first thing found that does not (a signature, an
    entry, a file, a figure)."""

    code = "evidence_invalid"
