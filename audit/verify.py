"""The verifier: trusts nothing but the verifier key (and what it verified before).

For each log it follows the chain of keys from the one given (`audit.rotation`: each rotation
entry, signed by the old key and the new, says from which entry on the new key signs), checks
every checkpoint's signature with the key in force at its size, recomputes the tree from the
entries and compares the root at every checkpoint size (which proves every entry's inclusion
and the consistency of all checkpoints with one another), and compares with the checkpoint
remembered from the previous run (the witness state). On a mismatch it narrows down the first
entry that cannot be verified, using consistency proofs where the source can give them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from domicile.audit.checkpoint import Checkpoint, open_checkpoint
from domicile.audit.errors import (
    CheckpointError,
    NoteError,
    ProofError,
    RotationError,
    VerificationFailed,
    WitnessStateUnreadable,
)
from domicile.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    leaf_hash,
    verify_consistency,
)
from domicile.audit.note import Verifier, parse_note
from domicile.audit.rotation import KeyChain, Rotation, rotation_in

Progress = Callable[[str, int, int], None]
"""Called with (log, entries verified, entries to verify)."""


class LogSource(Protocol):
    """Where the verifier reads logs from: a deployment's databases, the HTTP API, an archive."""

    location: str

    async def logs(self) -> list[str]: ...

    async def checkpoints(self, log: str) -> list[str]:
        """Signed checkpoint notes of the log (any order)."""

    def leaves(self, log: str, start: int, end: int) -> AsyncIterator[Sequence[tuple[int, bytes]]]:
        """Batches of (index, leaf), in index order from ``start``; stops early where entries
        run out."""

    async def consistency_proof(self, log: str, first: int, second: int) -> list[bytes] | None:
        """The source's proof, or None if it cannot give one (an archive)."""


@dataclass(frozen=True)
class Verified:
    log: str
    size: int
    root: bytes
    checkpoints: int  # signed checkpoints checked
    note: str | None  # the latest checkpoint, remembered by the witness


# -- witness state ---------------------------------------------------------------------------------


class WitnessState:
    """The last verified checkpoint per (verifier key, origin), in a JSON file the auditor owns."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        if path is not None and path.exists():
            try:
                self._data = json.loads(path.read_text())["keys"]
            except (ValueError, KeyError, TypeError) as exc:
                raise WitnessStateUnreadable(path, str(exc)) from None

    def get(self, verifier: Verifier, origin: str) -> tuple[int, bytes] | None:
        seen = self._data.get(verifier.vkey, {}).get(origin)
        if seen is None:
            return None
        return int(seen["size"]), base64.b64decode(seen["root"])

    def remember(self, verifier: Verifier, origin: str, result: Verified) -> None:
        if result.note is None:
            return
        self._data.setdefault(verifier.vkey, {})[origin] = {
            "size": result.size,
            "root": base64.b64encode(result.root).decode(),
            "checkpoint": result.note,
        }

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps({"version": 1, "keys": self._data}, indent=2) + "\n")
        os.replace(partial, self.path)


# -- verification ----------------------------------------------------------------------------------


def _prefix_root(hashes: bytearray, size: int) -> bytes:
    tree = CompactRange()
    for i in range(size):
        tree.append(bytes(hashes[32 * i : 32 * (i + 1)]))
    return tree.root()


class _LogCheck:
    def __init__(
        self,
        source: LogSource,
        log: str,
        verifier: Verifier,
        witness: tuple[int, bytes] | None,
        progress: Progress | None,
    ) -> None:
        self.source = source
        self.log = log
        self.verifier = verifier  # the key trusted: the log's first, or any of its chain
        self.origin = f"{verifier.name}/{log}"
        self.witness = witness
        self.progress = progress
        self.hashes = bytearray()  # every leaf hash, for narrowing down a failure
        self.rotations: list[tuple[int, Rotation]] = []  # as the entries are read

    def fail(self, message: str, index: int | None = None) -> VerificationFailed:
        return VerificationFailed(self.log, message, index)

    async def claimed(self) -> dict[int, list[tuple[str, Checkpoint]]]:
        """Every checkpoint, by size, parsed but not yet verified: which key signs a size is
        known only once the entries before it have been read (`signed_roots`)."""
        found: dict[int, list[tuple[str, Checkpoint]]] = {}
        for note in await self.source.checkpoints(self.log):
            try:
                checkpoint = Checkpoint.parse(parse_note(note).text)
            except (NoteError, CheckpointError) as exc:
                raise self.fail(f"checkpoint{_claimed_size(note)} does not verify: {exc}") from None
            if checkpoint.origin != self.origin:
                raise self.fail(
                    f"checkpoint of size {checkpoint.size} is for log {checkpoint.origin!r}, "
                    f"expected {self.origin!r}"
                )
            found.setdefault(checkpoint.size, []).append((note, checkpoint))
        return found

    def key_chain(self) -> KeyChain:
        """The log's keys from the rotations read so far, which must hold the key trusted."""
        try:
            chain = KeyChain.of(self.verifier, self.rotations)
        except RotationError as exc:
            raise self.fail(str(exc), exc.index) from None
        if self.verifier not in chain.keys:
            raise self.fail(
                f"the log's keys start at {chain.keys[0].vkey}; neither it nor a key it was "
                f"rotated to is the key given ({self.verifier.vkey})",
                self.rotations[0][0],
            )
        return chain

    def signed_roots(
        self, claimed: dict[int, list[tuple[str, Checkpoint]]], upto: int
    ) -> tuple[dict[int, bytes], str | None]:
        """The roots of the checkpoints up to ``upto`` entries (those read), each checkpoint
        verified with the key the chain names for its size; and the latest note. A checkpoint
        beyond the entries read (they ran out) must at least verify with a key of the chain."""
        chain = self.key_chain()
        roots: dict[int, bytes] = {}
        latest: str | None = None
        for size in sorted(claimed):
            keys = [chain.key_at(size)] if size <= upto else list(chain.keys)
            for note, checkpoint in claimed[size]:
                try:
                    open_checkpoint(note, keys, self.origin)
                except (NoteError, CheckpointError) as exc:
                    raise self.fail(f"checkpoint of size {size} does not verify: {exc}") from None
                if size > upto:
                    continue
                if roots.setdefault(size, checkpoint.root_hash) != checkpoint.root_hash:
                    raise self.fail(f"two signed checkpoints of size {size} differ (a fork)")
                latest = note
        return roots, latest

    async def run(self) -> Verified:
        claimed = await self.claimed()
        expected = {size: found[0][1].root_hash for size, found in claimed.items()}
        if self.witness is not None and self.witness[0] > max(claimed, default=-1):
            raise self.fail(
                f"rolled back: the latest checkpoint has size {max(claimed, default=0)}, "
                f"but size {self.witness[0]} was verified before"
            )
        if self.witness is not None:
            expected.setdefault(*self.witness)
        sizes = sorted(s for s in expected if s > 0)
        tree, good = await self.recompute(sizes, expected)
        roots, latest_note = self.signed_roots(claimed, tree.size)
        if self.witness is not None:
            seen_size, seen_root = self.witness
            if roots.get(seen_size, seen_root) != seen_root:
                raise self.fail(
                    f"fork: the signed checkpoint of size {seen_size} differs from the one "
                    "verified before"
                )
        if roots.get(0, EMPTY_ROOT) != EMPTY_ROOT:
            raise self.fail("the signed checkpoint of size 0 is not the empty tree")
        if good < max(sizes, default=0):  # the first signed size not reached intact
            above = min(s for s in sizes if s > good)
            raise await self.locate(good, above, expected[above])
        await self.check_witness_proof(roots)
        return Verified(self.log, tree.size, tree.root(), len(roots), latest_note)

    async def recompute(
        self, sizes: list[int], expected: dict[int, bytes]
    ) -> tuple[CompactRange, int]:
        """Rebuild the tree from the entries up to the largest signed size, comparing the root
        at each; returns the tree and the largest size that matched. Stops at a gap, at the
        first mismatch, or at the end. Works a batch at a time (an index check, the leaf hashes,
        then the tree up to each signed size): per entry in Python, it ran at half the speed."""
        tree = CompactRange()
        good = 0
        if not sizes:
            return tree, good
        pending = iter(sizes)
        want = next(pending)
        async for batch in self.source.leaves(self.log, 0, sizes[-1]):
            intact = _in_order(batch, tree.size)
            self.read_rotations(batch[:intact])
            digests = [leaf_hash(leaf) for _, leaf in batch[:intact]]
            done = 0
            while done < intact:
                step = digests[done : done + want - tree.size]
                done += len(step)
                self.hashes += b"".join(step)
                tree.extend(step)
                if tree.size == want:
                    if tree.root() != expected[want]:
                        return tree, good
                    good, want = want, next(pending, 0)
                    if not want:
                        return tree, good
            if intact < len(batch):
                return tree, good
            if self.progress is not None:
                self.progress(self.log, tree.size, sizes[-1])
        return tree, good

    def read_rotations(self, batch: Sequence[tuple[int, bytes]]) -> None:
        """Note the key rotations among entries read; a forged one fails here, by its index."""
        for index, leaf in batch:
            try:
                rotation = rotation_in(leaf)
            except RotationError as exc:
                raise self.fail(str(exc), index) from None
            if rotation is not None:
                self.rotations.append((index, rotation))

    async def check_witness_proof(self, roots: dict[int, bytes]) -> None:
        """Ask the source to prove consistency from the remembered checkpoint to the latest, as
        a third-party witness would (the recomputation above already implies it)."""
        if self.witness is None or not self.witness[0]:
            return
        first, second = self.witness[0], max(roots)
        if first == second:
            return
        proof = await self.source.consistency_proof(self.log, first, second)
        if proof is None:
            return
        try:
            verify_consistency(first, second, proof, self.witness[1], roots[second])
        except ProofError as exc:
            raise self.fail(
                f"the source's consistency proof {first}->{second} fails: {exc}"
            ) from None

    async def authentic(self, size: int, hi: int, root: bytes) -> bool | None:
        """Whether the first ``size`` entries read are those the checkpoint of ``hi`` signed;
        None when the source gives no proofs to tell."""
        proof = await self.source.consistency_proof(self.log, size, hi)
        if proof is None:
            return None
        try:
            verify_consistency(size, hi, proof, _prefix_root(self.hashes, size), root)
        except ProofError:
            return False
        return True

    async def locate(self, good: int, hi: int, root: bytes) -> VerificationFailed:
        """The failure naming the first entry in [good, hi) that cannot be verified: a binary
        search for the longest authentic prefix, using the source's consistency proofs."""
        top = min(len(self.hashes) // 32, hi)
        verdict = await self.authentic(top, hi, root) if top > good else True
        if verdict:
            return self.fail(f"missing, though the signed checkpoint of size {hi} covers it", top)
        if verdict is None:
            return self.fail(
                f"entries {good}..{hi - 1} do not match the signed checkpoint of size {hi}", good
            )
        lo, up = good, top  # the prefix of size lo is authentic, that of size up is not
        while up - lo > 1:
            mid = (lo + up) // 2
            if await self.authentic(mid, hi, root):
                lo = mid
            else:
                up = mid
        return self.fail(f"does not match the signed checkpoint of size {hi}", lo)


def _in_order(batch: Sequence[tuple[int, bytes]], start: int) -> int:
    """How many entries at the head of ``batch`` have the indices ``start``, ``start + 1``..."""
    indices = [index for index, _ in batch]
    if indices == list(range(start, start + len(indices))):
        return len(indices)
    return next(n for n, index in enumerate(indices) if index != start + n)


def _claimed_size(note: str) -> str:
    lines = note.split("\n")
    return f" of size {lines[1]}" if len(lines) > 2 and lines[1].isdigit() else ""


async def verify_log(
    source: LogSource,
    log: str,
    verifier: Verifier,
    witness: WitnessState | None = None,
    progress: Progress | None = None,
) -> Verified:
    """Verify one log; raises `VerificationFailed` naming the log and the first bad index."""
    origin = f"{verifier.name}/{log}"
    seen = witness.get(verifier, origin) if witness is not None else None
    result = await _LogCheck(source, log, verifier, seen, progress).run()
    if witness is not None:
        witness.remember(verifier, origin, result)
    return result


def describe(result: Verified) -> str:
    if result.note is None:
        return f"{result.log}: no checkpoint yet, nothing to verify"
    root = base64.b64encode(result.root).decode()
    return (
        f"{result.log}: ok, {result.size} entries, {result.checkpoints} signed checkpoints, "
        f"root {root}"
    )
