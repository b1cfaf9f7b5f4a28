"""Signing key rotation: the statement that hands a deployment's logs from one key to the next,
and the chain of keys a log has been signed with.

A rotation is an entry of every log (event ``key.rotated``) carrying the old and the new
verifier key and ``rotation``, a signed note over both signed by the old key (it consents) and
the new (its holder has it). A verifier that holds only the first key follows the chain entry
by entry: the checkpoints of a tree that holds the rotation at index ``i`` (size ``> i``) are
signed with the new key. Each new key also vouches for the one before it, so a verifier may
start from any key of the chain.

The note's text is the RFC 8785 JSON of ``{"event", "new_key", "old_key", "time"}`` (when the
rotation was decided; the entry's own ``time`` says when that log took it) and a newline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domicile.audit.errors import NoteError, RotationError
from domicile.audit.events import KEY_ROTATED, canonical_json, rfc3339
from domicile.audit.note import Signer, Verifier, sign_note, verify_note

#: Marks a leaf that may be a rotation without decoding it: JCS writes this pair exactly so,
#: and a quote inside a string value is always escaped.
ROTATION_MARK = f'"event":"{KEY_ROTATED}"'.encode()


@dataclass(frozen=True)
class Rotation:
    old: Verifier
    new: Verifier
    time: str
    note: str  # signed by both keys

    @classmethod
    def sign(cls, old: Signer, new: Signer, moment: datetime) -> Rotation:
        if old.name != new.name:
            raise RotationError("the new key must have the old key's name (the logs' origins)")
        time = rfc3339(moment)
        text = _statement(old.verifier(), new.verifier(), time)
        return cls(old.verifier(), new.verifier(), time, sign_note(text, [old, new]))

    def fields(self) -> dict[str, Any]:
        """The entry's fields besides the usual ones (``make_leaf``)."""
        return {"old_key": self.old.vkey, "new_key": self.new.vkey, "rotation": self.note}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Rotation:
        """The rotation an entry records, once both signatures and every field check out."""
        try:
            old = Verifier.parse(str(event.get("old_key")))
            new = Verifier.parse(str(event.get("new_key")))
            note = str(event.get("rotation"))
            verify_note(note, [old])
            text = verify_note(note, [new]).text
        except NoteError as exc:
            raise RotationError(f"key rotation does not verify: {exc}") from None
        try:
            time = str(json.loads(text)["time"])
        except (ValueError, KeyError, TypeError):
            raise RotationError("key rotation: the signed statement is malformed") from None
        if text != _statement(old, new, time):
            raise RotationError("key rotation: the signed statement is not the entry's")
        if old.name != new.name or old == new:
            raise RotationError("key rotation: the new key must differ, under the same name")
        return cls(old, new, time, note)


def _statement(old: Verifier, new: Verifier, time: str) -> str:
    body = {"event": KEY_ROTATED, "new_key": new.vkey, "old_key": old.vkey, "time": time}
    return canonical_json(body).decode() + "\n"


def rotation_in(leaf: bytes) -> Rotation | None:
    """The rotation a leaf records (verified), or None when it records something else."""
    if ROTATION_MARK not in leaf:
        return None
    try:
        event = json.loads(leaf)
    except ValueError:
        return None  # not JSON: the tree check names it, if a checkpoint covers it
    if not isinstance(event, dict) or event.get("event") != KEY_ROTATED:
        return None
    return Rotation.from_event(event)


@dataclass(frozen=True)
class KeyChain:
    """A log's keys in the order it was signed with them: ``keys[0]`` up to the first rotation,
    then each rotation's new key from its entry's index on (``starts``)."""

    keys: tuple[Verifier, ...]
    starts: tuple[int, ...]  # index of the rotation entry that brought keys[i] in (0 for the first)

    @classmethod
    def of(cls, first: Verifier, rotations: Sequence[tuple[int, Rotation]]) -> KeyChain:
        """The chain of rotations (index, rotation) in log order; each must hand over from the
        key before it (`RotationError` otherwise, ``index`` set)."""
        keys, starts = [rotations[0][1].old if rotations else first], [0]
        for index, rotation in rotations:
            if rotation.old != keys[-1]:
                raise RotationError(
                    f"key rotation from {rotation.old.vkey}, but the log's key then is "
                    f"{keys[-1].vkey}",
                    index,
                )
            keys.append(rotation.new)
            starts.append(index)
        return cls(tuple(keys), tuple(starts))

    def key_at(self, size: int) -> Verifier:
        """The key that signs the checkpoint of the tree of ``size``."""
        position = sum(1 for start in self.starts[1:] if start < size)
        return self.keys[position]
