"""What audit needs from where a log is kept (`LogStore`): its queue of committed entries, the
integrated entries with their stored tree nodes, and the checkpoints issued; and issuing a
checkpoint through it. A deployment keeps each shard's log in that shard's own database
(``shards.log_store``): audit knows it only through this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domicile.audit.checkpoint import Checkpoint, sign_checkpoint
from domicile.audit.events import LogSite
from domicile.audit.note import Signer


@dataclass(frozen=True)
class Entry:
    index: int
    leaf: bytes


@dataclass(frozen=True)
class IssuedCheckpoint:
    size: int
    root: bytes
    note: str  # the signed note, exactly as served


class LogStore(Protocol):
    """One log's storage. Safe to use from many processes at once.

    Raises `ProofRangeError` for a size or index beyond the integrated tree, `MissingNodes` when
    the stored tree lacks a node it should hold, and `LogUnavailable` when the store cannot be
    reached now (retryable). An implementation may raise a subclass of `LogUnavailable` that is
    also its own kind of error, so that its callers above audit answer it as they always have.
    """

    @property
    def name(self) -> str:
        """The log's name (``site.log``)."""

    @property
    def site(self) -> LogSite: ...

    async def has_pending(self) -> bool:
        """Whether committed entries wait for integration: a cheap probe, without the lock."""

    async def integrate(self) -> int:
        """Give every committed entry the next index, in commit order, and store the tree nodes
        they complete; returns the tree size."""

    async def size(self) -> int:
        """The integrated tree size."""

    async def entries(self, start: int, end: int) -> list[Entry]:
        """Integrated entries with ``start <= index < end``."""

    async def leaves(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """``entries`` as plain (index, leaf) pairs, for readers of every entry."""

    async def subject_entries(self, pseudonym: str, below: int) -> list[Entry]:
        """The subject's integrated entries with index below ``below``."""

    async def root(self, size: int) -> bytes:
        """The root hash of the tree at ``size`` (any integrated size)."""

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    async def checkpoints(self) -> list[IssuedCheckpoint]:
        """Every checkpoint issued, smallest first."""

    async def latest_checkpoint(self) -> IssuedCheckpoint | None: ...

    async def checkpoint_at(self, size: int) -> IssuedCheckpoint | None:
        """The checkpoint kept for the tree of ``size``, if one was issued."""

    async def keep_checkpoint(self, checkpoint: IssuedCheckpoint) -> IssuedCheckpoint:
        """Store ``checkpoint`` unless one of its size is kept already; returns the one kept."""

    async def key_rotations(self) -> list[tuple[int | None, bytes]]:
        """The log's key rotation entries in log order: (index, leaf) once integrated, then
        (None, leaf) for those still queued. Found without reading the rest of the log."""

    async def append_key_rotation(self, leaf: bytes, after: int) -> bool:
        """Queue a key rotation entry if the log holds exactly ``after`` of them, queued ones
        included; False otherwise. Processes rotating at once thus add one entry, not one each."""


async def issue_checkpoint(
    log: LogStore, size: int, origin: str, signer: Signer
) -> IssuedCheckpoint:
    """Sign and keep the checkpoint of the tree at ``size`` (any integrated size).

    Ed25519 signatures are deterministic, so racing issuers keep the same note.
    """
    root = await log.root(size)
    note = sign_checkpoint(Checkpoint(origin, size, root), signer)
    return await log.keep_checkpoint(IssuedCheckpoint(size, root, note))
