"""Choose a home shard among the shards a subject's policy permits: for a new subject, and for
one that ``comply`` or a drain moves.

Rendezvous (highest-random-weight) hashing of the subject's pseudonym: deterministic, spreads
subjects evenly, and adding a shard only attracts the share of *new* subjects it wins. The choice
is then recorded in the directory, so subjects already placed never move implicitly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from domicile.shards.errors import NoPermittedRegion
from domicile.shards.policy import ShardSpec, Topology


def _weight(shard: str, pseudonym: str) -> bytes:
    return hashlib.sha256(f"{shard}\x00{pseudonym}".encode()).digest()


def _rendezvous(pseudonym: str, candidates: Sequence[ShardSpec]) -> ShardSpec:
    return max(candidates, key=lambda spec: _weight(spec.name, pseudonym))


def choose_home(
    topology: Topology, jurisdiction: str, pseudonym: str, *, excluding: str | None = None
) -> ShardSpec:
    """The shard a new subject is placed on, and a misplaced one moved to: among the permitted
    shards that accept new subjects, other than ``excluding`` (a shard being drained). Raises
    when there is none."""
    permitted = [
        s
        for s in topology.permitted_shards(jurisdiction)
        if s.accepts_new_subjects and s.name != excluding
    ]
    if not permitted:
        raise NoPermittedRegion(jurisdiction)
    return _rendezvous(pseudonym, permitted)
