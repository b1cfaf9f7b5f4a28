"""C2SP transparency log checkpoints (https://c2sp.org/tlog-checkpoint), signed as notes.

The note text is an origin line (the log's identity), the tree size in decimal, the base64 root
hash, then optional extension lines.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from domicile.audit.errors import CheckpointError
from domicile.audit.merkle import HASH_SIZE
from domicile.audit.note import Signer, Verifier, open_note

# Go tooling parses the size as uint64; a bigger number is an attack, not a log.
MAX_TREE_SIZE: Final = 2**64 - 1
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII only: str.isdigit would allow other scripts


def _check_line(value: str, what: str) -> None:
    if not value or "\n" in value:
        raise CheckpointError(f"{what} must be a non-empty single line")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    # Opaque lines after the root; allowed by the spec but not auditable, so we emit none.
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        for line in self.extensions:
            _check_line(line, "checkpoint extension line")

    def body(self) -> str:
        """The note text: origin, size and root lines, then any extension lines."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a note text strictly: `parse(cp.body()) == cp`, and nothing else is accepted."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint needs at least 3 lines, got {len(lines)}")
        origin, size, root64, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise CheckpointError(f"checkpoint tree size {size[:30]!r} is not a canonical decimal")
        try:
            root = base64.b64decode(root64, validate=True)
        except ValueError:
            raise CheckpointError("checkpoint root hash is not base64") from None
        # Canonical encoding only, so one tree head has exactly one checkpoint body.
        if base64.b64encode(root).decode("ascii") != root64:
            raise CheckpointError("checkpoint root hash is not canonical base64")
        return cls(origin, int(size), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed note of `checkpoint`. The spec asks the key name to match the origin."""
    return signer.sign(checkpoint.body())


def open_checkpoint(
    note: str, verifiers: Iterable[Verifier], origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and parse it; `NoteError` if unverified.

    Pass `origin` to pin the log: a validly signed checkpoint of another log is rejected.
    """
    checkpoint = Checkpoint.parse(open_note(note, verifiers))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint
