"""Checking an evidence pack offline (``domicile audit verify --evidence DIR``): the statement's
signature, every log's entries against its signed checkpoint (following the log's chain of key
rotations from the key given, as ``audit.verify`` does), every file's digest, and every
figure recomputed from the entries. The first thing that does not hold raises `EvidenceInvalid`
naming it; anything unreadable, missing or truncated is such a thing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domicile.audit.checkpoint import Checkpoint, open_checkpoint
from domicile.audit.errors import CheckpointError, EvidenceInvalid, NoteError, RotationError
from domicile.audit.evidence import LogReplay, Volumes, figures
from domicile.audit.evidence_pack import (
    CHECKPOINT,
    ENTRIES,
    KEY,
    LOGS,
    STATEMENT,
    STATEMENT_TYPE,
    sha256_file,
    statement_text,
)
from domicile.audit.merkle import CompactRange, leaf_hash
from domicile.audit.note import Verifier, open_note, parse_note
from domicile.audit.policy_record import parse_time
from domicile.audit.rotation import KeyChain, Rotation, rotation_in

#: The statement's fields recomputed from the entries, in the order they are compared.
RECOMPUTED = (
    "policy",
    "policy_history",
    "locations",
    "compliant_since",
    "violation_periods",
    "violations",
    "volumes",
)


#: Bytes of entries read, hashed and replayed at a time.
BATCH_BYTES = 1 << 22


@dataclass(frozen=True)
class CheckedPack:
    statement: dict[str, Any]
    entries: int


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EvidenceInvalid(f"{path.name}: cannot be read: {exc.strerror}") from None


def _unverified_statement(folder: Path) -> tuple[dict[str, Any], str]:
    try:
        body = json.loads(_read(folder / STATEMENT))
        statement, note = body["evidence"], body["signed_note"]
    except (ValueError, KeyError, TypeError):
        raise EvidenceInvalid(f"{STATEMENT}: not an evidence statement") from None
    if not isinstance(statement, dict) or not isinstance(note, str):
        raise EvidenceInvalid(f"{STATEMENT}: not an evidence statement")
    return statement, note


def _check_signed(statement: dict[str, Any], note: str, current: set[Verifier]) -> None:
    """The statement is signed by the key the logs' chains end at (the deployment's current
    key), and is exactly the text signed."""
    try:
        signed = open_note(note, current)
    except NoteError as exc:
        raise EvidenceInvalid(f"{STATEMENT}: the signed note does not verify: {exc}") from None
    if statement_text(statement) != signed:
        raise EvidenceInvalid(f"{STATEMENT}: the statement is not the one signed")
    if statement.get("type") != STATEMENT_TYPE:
        raise EvidenceInvalid(f"{STATEMENT}: not an evidence statement")
    if statement.get("verifier_key") not in {key.vkey for key in current}:
        raise EvidenceInvalid(f"{STATEMENT}: names another verifier key than the logs' current")


def _replay_log(
    folder: Path, pinned: Verifier, log: str, note: str, replay: LogReplay
) -> tuple[int, Verifier]:
    """Replay the log's entries, checked against its checkpoint, signed with the key its chain
    of rotations (followed from ``pinned``) names for that size; returns the entries read and
    the log's current key."""
    where = folder / LOGS / log
    if _read(where / CHECKPOINT).decode(errors="replace") != note:
        raise EvidenceInvalid(f"log {log}: {CHECKPOINT} is not the checkpoint the statement names")
    try:
        claimed = Checkpoint.parse(parse_note(note).text)
    except (NoteError, CheckpointError) as exc:
        raise EvidenceInvalid(f"log {log}: the checkpoint is malformed: {exc}") from None
    tree = CompactRange()
    rotations: list[tuple[int, Rotation]] = []
    try:
        with (where / ENTRIES).open("rb") as entries:
            while batch := entries.readlines(BATCH_BYTES):
                leaves = _leaves(log, tree.size, batch, claimed.size)
                start = tree.size
                tree.extend([leaf_hash(leaf) for leaf in leaves])
                rotations += _rotations(log, start, leaves)
                _feed(log, replay, start, leaves)
    except OSError as exc:
        raise EvidenceInvalid(f"log {log}: {ENTRIES} cannot be read: {exc.strerror}") from None
    chain = _chain(log, pinned, rotations)
    try:
        open_checkpoint(note, [chain.key_at(claimed.size)], f"{pinned.name}/{log}")
    except (NoteError, CheckpointError) as exc:
        raise EvidenceInvalid(f"log {log}: the checkpoint does not verify: {exc}") from None
    if tree.size < claimed.size:
        raise EvidenceInvalid(
            f"log {log}, entry {tree.size}: missing, though the signed checkpoint of size "
            f"{claimed.size} covers it"
        )
    if tree.root() != claimed.root_hash:
        raise EvidenceInvalid(
            f"log {log}: entries 0..{claimed.size - 1} do not match the signed checkpoint "
            f"of size {claimed.size}"
        )
    return tree.size, chain.keys[-1]


def _rotations(log: str, start: int, leaves: list[bytes]) -> list[tuple[int, Rotation]]:
    found = []
    for index, leaf in enumerate(leaves, start):
        try:
            rotation = rotation_in(leaf)
        except RotationError as exc:
            raise EvidenceInvalid(f"log {log}, entry {index}: {exc}") from None
        if rotation is not None:
            found.append((index, rotation))
    return found


def _chain(log: str, pinned: Verifier, rotations: list[tuple[int, Rotation]]) -> KeyChain:
    try:
        chain = KeyChain.of(pinned, rotations)
    except RotationError as exc:
        raise EvidenceInvalid(f"log {log}, entry {exc.index}: {exc}") from None
    if pinned not in chain.keys:
        raise EvidenceInvalid(
            f"log {log}: the key given ({pinned.vkey}) is not one of the log's keys"
        )
    return chain


def _leaves(log: str, start: int, lines: list[bytes], size: int) -> list[bytes]:
    for offset, line in enumerate(lines):
        if start + offset >= size or not line.endswith(b"\n"):
            raise EvidenceInvalid(
                f"log {log}, entry {start + offset}: not covered by the checkpoint of size {size}"
            )
    return [line[:-1] for line in lines]


def _feed(log: str, replay: LogReplay, start: int, leaves: list[bytes]) -> None:
    for index, leaf in enumerate(leaves, start):
        try:
            replay.feed(index, leaf)
        except (ValueError, KeyError, TypeError):
            raise EvidenceInvalid(f"log {log}, entry {index}: not an audit event") from None


def check_pack(folder: Path, key: Verifier | None = None) -> CheckedPack:
    """Verify the pack in ``folder`` with ``key`` (default: the pack's own ``verifier.key``,
    which a regulator should compare with one obtained independently)."""
    if key is None:
        try:
            key = Verifier.parse(_read(folder / KEY).decode(errors="replace").strip())
        except NoteError as exc:
            raise EvidenceInvalid(f"{KEY}: {exc}") from None
    statement, note = _unverified_statement(folder)
    try:
        jurisdiction, checkpoints = statement["jurisdiction"], dict(statement["checkpoints"])
        at = parse_time(statement["generated_at"])
        files = dict(statement["files"])
    except (KeyError, TypeError, ValueError):
        raise EvidenceInvalid(f"{STATEMENT}: the statement lacks its fields") from None
    volumes = Volumes()
    replays = []
    entries = 0
    current: set[Verifier] = {key} if not checkpoints else set()
    for log, checkpoint in checkpoints.items():
        replay = LogReplay(log, jurisdiction, volumes)
        read, latest = _replay_log(folder, key, log, checkpoint, replay)
        entries += read
        current.add(latest)
        replay.finish(at)
        replays.append(replay)
    _check_signed(statement, note, current)
    for name, digest in sorted(files.items()):
        if Path(name).name != name:
            raise EvidenceInvalid(f"{STATEMENT}: names a file outside the pack: {name!r}")
        if not (folder / name).is_file():
            raise EvidenceInvalid(f"{name}: missing")
        if sha256_file(folder / name) != digest:
            raise EvidenceInvalid(f"{name}: changed since the statement was signed")
    recomputed = figures(replays, volumes)
    for field in RECOMPUTED:
        if statement.get(field) != recomputed[field]:
            raise EvidenceInvalid(
                f"figure {field!r} does not hold: the statement says "
                f"{_short(statement.get(field))}, the entries give {_short(recomputed[field])}"
            )
    return CheckedPack(statement, entries)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:200] + "…"
