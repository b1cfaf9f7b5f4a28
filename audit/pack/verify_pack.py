#!/usr/bin/env python3
"""Check a domicile evidence pack without domicile: Python 3.11+ and `cryptography` only.

    pip install cryptography
    python3 verify_pack.py PACK_DIR [VERIFIER_KEY]

It checks the statement's signature, every log's entries against its signed checkpoint
(RFC 9162 tree, C2SP checkpoint and signed note), the digest of every file the statement
names, and recomputes each location's subject and record counts and the policy history from
the entries. `domicile audit verify --evidence PACK_DIR` also recomputes every other figure.
Exit 0 when everything holds, else 1 with the first thing that does not.
"""

import base64
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(message: str) -> NoReturn:
    print(f"verify_pack: does not hold: {message}", file=sys.stderr)
    sys.exit(1)


Key = tuple[str, bytes, Ed25519PublicKey]


def parse_key(vkey: str) -> Key:
    """`<name>+<hex key id>+<base64(0x01 || 32-byte Ed25519 public key)>`"""
    name, key_id, key64 = vkey.split("+", 2)
    typed = base64.b64decode(key64)
    if typed[0] != 1 or len(typed) != 33:
        fail("the verifier key is not an Ed25519 key")
    if hashlib.sha256(name.encode() + b"\n" + typed).digest()[:4].hex() != key_id:
        fail("the verifier key's id does not match its name and key")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(typed[1:])


def open_note(note: str, key: Key) -> str:
    """The text of a signed note (signature lines `— <name> <base64(key id || signature)>`)."""
    name, key_id, public = key
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        signer, _, blob64 = line.removeprefix("\u2014 ").partition(" ")
        blob = base64.b64decode(blob64)
        if signer == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text.encode())
            except InvalidSignature:
                fail(f"a bad signature on {text.splitlines()[0][:60]!r}")
            return text
    fail("a note not signed by the verifier key")


def root_of(leaves: Iterable[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of an iterable of leaves, in constant memory per level."""
    stack: list[tuple[int, bytes]] = []  # perfect subtrees: (size, hash), largest first
    for leaf in leaves:
        node = (1, hashlib.sha256(b"\x00" + leaf).digest())
        while stack and stack[-1][0] == node[0]:
            size, left = stack.pop()
            node = (2 * size, hashlib.sha256(b"\x01" + left + node[1]).digest())
        stack.append(node)
    if not stack:
        return hashlib.sha256(b"").digest()
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = hashlib.sha256(b"\x01" + left + root).digest()
    return root


def main(pack: Path, vkey: str | None = None) -> None:
    key = parse_key(vkey or (pack / "verifier.key").read_text().strip())
    body = json.loads((pack / "evidence.json").read_text())
    statement = json.loads(open_note(body["signed_note"], key))
    if statement != body["evidence"]:
        fail("evidence.json: the statement is not the one signed")
    counts: dict[str, tuple[int, int]] = {}
    history: list[list[Any]] = []
    for log, note in statement["checkpoints"].items():
        folder = pack / "logs" / log
        if (folder / "checkpoint").read_text() != note:
            fail(f"log {log}: the checkpoint file is not the one the statement names")
        origin, size, root = open_note(note, key).splitlines()[:3]
        if origin != f"{key[0]}/{log}":
            fail(f"log {log}: the checkpoint is for {origin}")
        leaves = (folder / "entries.jsonl").read_bytes().split(b"\n")
        if leaves.pop() != b"" or len(leaves) != int(size):
            fail(f"log {log}: {len(leaves)} entries, the checkpoint covers {size}")
        if root_of(leaves) != base64.b64decode(root):
            fail(f"log {log}: the entries do not match the signed checkpoint")
        held: dict[str, list[Any]] = {}
        for index, leaf in enumerate(leaves):
            event = json.loads(leaf)
            kind, subject = event["event"], event.get("subject")
            if kind == "policy.changed":
                history.append([event["time"], event["policy_sha256"], log, index])
            elif kind in ("subject.registered", "subject.moved_in"):
                held[subject] = [event["jurisdiction"], event.get("records", 0)]
            elif kind in ("subject.erased", "subject.moved_out"):
                held.pop(subject, None)
            elif kind == "record.put" and event.get("version") == 1 and subject in held:
                held[subject][1] += 1
            elif kind == "record.deleted" and subject in held:
                held[subject][1] -= 1
        wanted = [h for h in held.values() if statement["jurisdiction"] in (None, h[0])]
        counts[log] = (len(wanted), sum(h[1] for h in wanted))
    for name, digest in statement["files"].items():
        if hashlib.sha256((pack / name).read_bytes()).hexdigest() != digest:
            fail(f"{name}: changed since the statement was signed")
    for location in statement["locations"]:
        if counts[location["shard"]] != (location["subjects"], location["records"]):
            fail(f"location {location['shard']}: the entries give {counts[location['shard']]}")
    stated = [[c["since"], c["sha256"], c["log"], c["index"]] for c in statement["policy_history"]]
    if sorted(stated) != sorted(history):
        fail("the policy history is not the one the entries give")
    since = statement["compliant_since"] or "never (not compliant now)"
    subjects = sum(n for n, _ in counts.values())
    print(f"{pack}: ok; {subjects} subjects; compliant since {since}")


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        fail(f"the pack cannot be read: {exc!r}")
