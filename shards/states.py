"""The states a subject, a placement, a move and a migration step can be in: one vocabulary for
the Python code and the SQL text built from it.

Each is a ``StrEnum``: a member is its value (``str(member)``, f-strings, drivers and JSON all
see the plain string), so the values already stored compare equal and are written unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class SubjectState(StrEnum):
    """A subject's fence row in a shard (``subjects.state``): writes proceed only at ``home``;
    reads also at ``moving_out`` (a move's source serves reads until the switch)."""

    HOME = "home"
    MOVING_OUT = "moving_out"  # a move's source during the write pause
    # A move's source from the switch on, until its purge: the target may take writes now, so
    # the source serves nothing (a stale router re-resolves rather than read older data).
    SWITCHED_OUT = "switched_out"
    MOVING_IN = "moving_in"  # a move's copy, written only by the move
    GONE = "gone"  # a moved subject's tombstone at its former home, without the raw subject id


class PlacementState(StrEnum):
    """A directory entry (``directory.state``) in the catalog."""

    PENDING = "pending"  # reserved by a registration not yet complete: invisible to requests
    ACTIVE = "active"
    MOVING = "moving"  # not written by this code; writes to such a subject answer subject_moving


class MoveState(StrEnum):
    """A move in the journal (``moves.state``), in order; it ends done, failed (stopped by an
    error and rolled back) or rolled_back (cancelled, or its subject was erased or moved by
    someone else meanwhile)."""

    PLANNED = "planned"
    COPYING = "copying"  # only read: earlier releases journaled it before their copy
    VERIFIED = "verified"
    SWITCHED = "switched"
    PURGED = "purged"  # only read: earlier releases journaled it after their purge
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"

    @property
    def finished(self) -> bool:
        return self in (MoveState.DONE, MoveState.FAILED, MoveState.ROLLED_BACK)

    @property
    def switched(self) -> bool:
        """The directory names the target: writes land there (the purge may still be due)."""
        return self in (MoveState.SWITCHED, MoveState.PURGED, MoveState.DONE)


class MigrationStatus(StrEnum):
    """A step of the schema migration journal (``shard_migrations.status``)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ClaimState(StrEnum):
    """A lookup key's entry in the catalog's blind index (``lookups.state``)."""

    PENDING = "pending"  # claimed by a request that has not written it on the home shard yet
    ACTIVE = "active"
