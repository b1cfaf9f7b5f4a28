"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

Wire-compatible with Go's golang.org/x/mod/sumdb/note, so third-party tools can check our notes:

    <text, ending in a newline>
    <blank line>
    — <key name> <base64(4-byte key ID || signature)>

Key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian. A verifier key is
``<name>+<8 hex key id>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from domicile.audit.errors import NoteError

ALG_ED25519: Final = 0x01
# The spec asks verifiers to cap signatures but accept at least 16; Go caps at 100.
MAX_SIGNATURES: Final = 100

_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE: Final = 32
_ED25519_SIG_SIZE: Final = 64
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_utf8(value: str, what: str) -> None:
    # A str can still hold lone surrogates, which have no UTF-8 encoding.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise NoteError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")
    _check_utf8(name, "key name")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    if _CONTROL.search(text):
        raise NoteError("note text must not contain control characters other than newline")
    _check_utf8(text, "note text")


def _b64decode(value: str, *, canonical: bool) -> bytes | None:
    """Strict standard base64, or None. `canonical` also rejects stray bits in the last char."""
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    if canonical and base64.b64encode(raw).decode("ascii") != value:
        return None
    return raw


def _key_id(name: str, typed_public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _format_key(name: str, key_id: int, typed_key: bytes) -> str:
    return f"{name}+{key_id:08x}+{base64.b64encode(typed_key).decode('ascii')}"


class Verifier:
    """An Ed25519 public key under a name, as named in a verifier key string."""

    __slots__ = ("_public_bytes", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_name(name)
        self.name: Final = name
        self.public_key: Final = public_key
        self._public_bytes = public_key.public_bytes_raw()
        self.key_id: Final = _key_id(name, bytes([ALG_ED25519]) + self._public_bytes)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        parts = vkey.split("+", 2)  # base64 may itself contain '+'
        if len(parts) != 3:
            raise NoteError("malformed verifier key: want <name>+<key id>+<base64 key>")
        name, hex_id, key64 = parts
        _check_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise NoteError(f"malformed verifier key: key id {hex_id!r} is not 8 hex digits")
        typed_key = _b64decode(key64, canonical=True)
        if not typed_key:
            raise NoteError("malformed verifier key: key is not canonical base64")
        if typed_key[0] != ALG_ED25519:
            raise NoteError(f"unsupported verifier key algorithm 0x{typed_key[0]:02x}")
        if len(typed_key) != 1 + _ED25519_KEY_SIZE:
            raise NoteError(f"malformed verifier key: Ed25519 key is {len(typed_key) - 1} bytes")
        if int(hex_id, 16) != _key_id(name, typed_key):
            raise NoteError(f"verifier key id {hex_id} does not match its name and key")
        return cls(name, Ed25519PublicKey.from_public_bytes(typed_key[1:]))

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        return _format_key(self.name, self.key_id, bytes([ALG_ED25519]) + self._public_bytes)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self._public_bytes) == (other.name, other._public_bytes)

    def __hash__(self) -> int:
        return hash((self.name, self._public_bytes))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class Signer:
    """An Ed25519 private key under a name. Its repr never shows the key."""

    __slots__ = ("_private_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._verifier = Verifier(name, private_key.public_key())

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> Signer:
        """From the raw 32-byte Ed25519 seed (RFC 8032 private key)."""
        if len(raw) != _ED25519_KEY_SIZE:
            raise NoteError(f"Ed25519 private key must be {_ED25519_KEY_SIZE} bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_pem(cls, name: str, data: bytes, password: bytes | None = None) -> Signer:
        """From a PKCS#8 PEM Ed25519 private key."""
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise NoteError(f"cannot load PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise NoteError(f"PEM private key is {type(key).__name__}, want Ed25519")
        return cls(name, key)

    @classmethod
    def from_go_private_key(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        # Messages never quote `skey`: it is a secret and may end up in logs.
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("malformed private key: want PRIVATE+KEY+<name>+<key id>+<key>")
        _, _, name, hex_id, key64 = parts
        _check_name(name)
        typed_key = _b64decode(key64, canonical=True)
        if not _HEX_KEY_ID.fullmatch(hex_id) or not typed_key:
            raise NoteError("malformed private key")
        if typed_key[0] != ALG_ED25519:
            raise NoteError(f"unsupported private key algorithm 0x{typed_key[0]:02x}")
        signer = cls.from_private_bytes(name, typed_key[1:])
        if int(hex_id, 16) != signer.key_id:
            raise NoteError("private key id does not match its name and key")
        return signer

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    def verifier(self) -> Verifier:
        return self._verifier

    def verifier_key(self) -> str:
        return self._verifier.vkey

    def private_bytes(self) -> bytes:
        """The raw 32-byte seed."""
        return self._private_key.private_bytes_raw()

    def private_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM; protect it like the raw key."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def go_private_key(self) -> str:
        """Go's private key string, for use with golang.org/x/mod/sumdb/note tools."""
        typed = bytes([ALG_ED25519]) + self.private_bytes()
        return "PRIVATE+KEY+" + _format_key(self.name, self.key_id, typed)

    def signature(self, text: str) -> NoteSignature:
        """Sign exactly the UTF-8 bytes of `text`."""
        _check_text(text)
        raw = self._private_key.sign(text.encode("utf-8"))
        return NoteSignature(self.name, self.key_id, raw)

    def sign(self, text: str) -> str:
        """The signed note of `text`."""
        return sign_note(text, [self])

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class ParsedNote:
    """A syntactically valid note; its signatures are not verified."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class OpenedNote:
    """A verified note: signatures by known keys (all valid) and by unknown keys (unchecked)."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """Sign `text` with every signer (e.g. old and new key during a rotation)."""
    lines = [signer.signature(text).line() for signer in signers]
    if not lines:
        raise NoteError("a note needs at least one signer")
    return text + "\n" + "".join(lines)


def _parse_signature(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"malformed note: expected a signature line, got {line[:40]!r}")
    name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
    try:
        _check_name(name)
    except NoteError as exc:
        raise NoteError(f"malformed note: {exc}") from None
    blob = _b64decode(sig64, canonical=False)
    if blob is None or len(blob) < 5:
        raise NoteError(f"malformed note: bad signature encoding from {name!r}")
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def parse_note(note: str) -> ParsedNote:
    """Split a note into text and signature lines, checking syntax only."""
    if _CONTROL.search(note):
        raise NoteError("malformed note: control characters other than newline")
    _check_utf8(note, "note")
    # The text may contain blank lines; signature lines never do, so the last one separates.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed note: signature lines must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return ParsedNote(text, tuple(_parse_signature(line) for line in lines))


def verify_note(note: str, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Verify `note` against known keys, per the spec.

    Signatures whose (name, key ID) match no known key are ignored, even if one of the two
    matches. Every signature from a known key must verify, and at least one must exist.
    """
    parsed = parse_note(note)
    known: dict[tuple[str, int], set[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), set()).add(v)
    message = parsed.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in parsed.signatures:
        candidates = known.get((sig.name, sig.key_id))
        if not candidates:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            # Two distinct keys share name and ID: which one signed is undecidable.
            raise NoteError(f"ambiguous key {sig.name}+{sig.key_id:08x}")
        (verifier,) = candidates
        if not verifier.verify(message, sig.signature):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id:08x}")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        names = ", ".join(sorted({f"{s.name}+{s.key_id:08x}" for s in parsed.signatures}))
        raise NoteError(f"note has no signature from a known key (signed by: {names})")
    return OpenedNote(parsed.text, tuple(verified), tuple(unverified))


def open_note(note: str, verifiers: Iterable[Verifier]) -> str:
    """The text of `note` once verified (see `verify_note`); the text is untrusted otherwise."""
    return verify_note(note, verifiers).text
