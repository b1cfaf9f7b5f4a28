import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from domicile.audit.errors import NoteError
from domicile.audit.note import (
    NoteSignature,
    Signer,
    Verifier,
    open_note,
    parse_note,
    sign_note,
    verify_note,
)

# Published vectors from golang.org/x/mod/sumdb/note (note_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
)


@pytest.fixture
def peter() -> Verifier:
    return Verifier.parse(PETER_VKEY)


@pytest.fixture
def enoch() -> Verifier:
    return Verifier.parse(ENOCH_VKEY)


def _with_id(name: str, typed_key: bytes) -> str:
    key_id = hashlib.sha256(name.encode() + b"\n" + typed_key).digest()[:4].hex()
    return f"{name}+{key_id}+{base64.b64encode(typed_key).decode()}"


# --- Go interoperability ---


def test_go_private_key_signs_like_go(peter: Verifier) -> None:
    signer = Signer.from_go_private_key(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier_key() == PETER_VKEY
    assert signer.verifier() == peter
    assert signer.go_private_key() == PETER_SKEY
    # Ed25519 is deterministic, so the note must be byte-for-byte Go's.
    assert signer.sign(TEXT) == TEXT + "\n" + PETER_SIG


def test_verifier_parse(peter: Verifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_id == 0xC74F20A3
    assert peter.vkey == PETER_VKEY
    assert repr(peter) == f"Verifier({PETER_VKEY!r})"


def _manglings(key: str) -> set[str]:
    # As Go's tests: every proper substring, and every single-character bump.
    subs = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)}
    bumps = {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    return (subs | bumps) - {key}


def test_verifier_rejects_mangled_keys() -> None:
    for bad in _manglings(PETER_VKEY):
        with pytest.raises(NoteError):
            Verifier.parse(bad)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        # Go's: wrong key length (base64 with stray bits, which we refuse outright) and unknown
        # algorithm, each with a correctly recomputed key ID.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",
        ),
        (_with_id("PeterNeumann", b"\x01" + bytes(31)), "Ed25519 key is 31 bytes"),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "algorithm 0x65"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("PeterNeumann+c74f20a3", "malformed verifier key"),
    ],
)
def test_verifier_errors_say_why(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Verifier.parse(vkey)


def test_go_private_key_rejects_mangled_keys() -> None:
    for bad in _manglings(PETER_SKEY):
        with pytest.raises(NoteError) as info:
            Signer.from_go_private_key(bad)
        # A private key must never be echoed into an error (and so into logs).
        assert "AYEKFALV" not in str(info.value)


def test_open_with_one_known_key(peter: Verifier) -> None:
    opened = verify_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id) for s in opened.unverified] == [("EnochRoot", 0xAF0CFE78)]
    assert opened.verified[0].line() == PETER_SIG
    assert opened.unverified[0].line() == ENOCH_SIG


def test_open_with_both_keys(peter: Verifier, enoch: Verifier) -> None:
    opened = verify_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter, enoch])
    assert [s.name for s in opened.verified] == ["PeterNeumann", "EnochRoot"]
    assert opened.unverified == ()
    assert open_note(TEXT + "\n" + ENOCH_SIG, [enoch, peter, enoch]) == TEXT


def test_open_without_known_key_fails(enoch: Verifier) -> None:
    with pytest.raises(NoteError, match=r"no signature from a known key.*PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + PETER_SIG, [enoch])
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(TEXT + "\n" + PETER_SIG, [])


def test_bad_signature_from_known_key_rejects_note(peter: Verifier, enoch: Verifier) -> None:
    corrupt = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + corrupt, [peter])
    # Even if another known key signed it properly.
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + ENOCH_SIG + corrupt, [peter, enoch])


def test_duplicate_and_unknown_signatures(peter: Verifier) -> None:
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = verify_note(note, [peter])
    assert len(opened.verified) == 1
    assert [s.line() for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


def test_unknown_key_sharing_name_or_id_is_ignored(peter: Verifier) -> None:
    impostor = Signer.generate("PeterNeumann")  # same name, different key ID
    other_name = NoteSignature("CarmenSandiego", peter.key_id, b"\x00" * 64)  # same ID
    note = sign_note(TEXT, [impostor]) + other_name.line() + PETER_SIG
    opened = verify_note(note, [peter])
    assert len(opened.verified) == 1
    assert len(opened.unverified) == 2


def test_ambiguous_known_keys_are_rejected() -> None:
    a, b = Signer.generate("twin"), Signer.generate("twin")
    note = a.sign(TEXT)
    assert open_note(note, [a.verifier(), a.verifier()]) == TEXT  # same key twice is fine
    # A real (name, key ID) collision between two keys costs ~2**32 tries, so forge one.
    clash = Verifier(b.name, b.verifier().public_key)
    object.__setattr__(clash, "key_id", a.key_id)
    with pytest.raises(NoteError, match="ambiguous key twin"):
        open_note(note, [a.verifier(), clash])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,
        TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG,
        TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
        "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("=", ""),
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes(note: str, peter: Verifier) -> None:
    with pytest.raises(NoteError, match=r"malformed note|not valid UTF-8"):
        open_note(note, [peter])


def test_parse_note_without_verifying() -> None:
    parsed = parse_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert parsed.text == TEXT
    assert [(s.name, s.key_id, len(s.signature)) for s in parsed.signatures] == [
        ("PeterNeumann", 0xC74F20A3, 64),
        ("EnochRoot", 0xAF0CFE78, 64),
    ]
    assert len(parse_note(TEXT + "\n" + PETER_SIG * 100).signatures) == 100


# --- Our own keys ---


@pytest.mark.parametrize(
    "text",
    [
        "a\n",
        "\n",
        "line\n\nafter a blank line\n",
        "ends with blank lines\n\n\n",
        "looks like a signature\n\n— PeterNeumann AAAAAAA=\n",
        "unicode ✓ ünïcødé 𝄞\n",
    ],
)
def test_sign_and_open_round_trip(text: str) -> None:
    signer = Signer.generate("domicile/test/log")
    verifier = Verifier.parse(signer.verifier_key())
    assert open_note(signer.sign(text), [verifier]) == text


def test_signature_covers_the_text() -> None:
    signer = Signer.generate("example.com/log")
    note = signer.sign("size 5\n")
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note.replace("size 5", "size 6"), [signer.verifier()])


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "cr\r\n", "\udc80\n"])
def test_sign_rejects_bad_text(text: str) -> None:
    with pytest.raises(NoteError, match="note text"):
        Signer.generate("k").sign(text)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\t", "nbsp\u00a0", "line\u2028"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(NoteError, match="invalid key name"):
        Signer.generate(name)


def test_key_serialisation_round_trips() -> None:
    signer = Signer.generate("example.com/log")
    raw = signer.private_bytes()
    assert len(raw) == 32
    for again in (
        Signer.from_private_bytes("example.com/log", raw),
        Signer.from_pem("example.com/log", signer.private_pem()),
        Signer.from_go_private_key(signer.go_private_key()),
    ):
        assert again.verifier_key() == signer.verifier_key()
        assert again.sign("x\n") == signer.sign("x\n")
    assert "PRIVATE" not in repr(signer)
    assert base64.b64encode(raw).decode() not in repr(signer)


def test_key_loading_errors() -> None:
    with pytest.raises(NoteError, match="32 bytes"):
        Signer.from_private_bytes("k", b"short")
    with pytest.raises(NoteError, match="cannot load PEM"):
        Signer.from_pem("k", b"not a pem")
    from cryptography.hazmat.primitives import serialization

    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(NoteError, match="want Ed25519"):
        Signer.from_pem("k", ec_pem)


def test_multiple_signers() -> None:
    old, new = Signer.generate("log"), Signer.generate("log")
    note = sign_note("rotating\n", [old, new])
    assert open_note(note, [new.verifier()]) == "rotating\n"
    assert open_note(note, [old.verifier()]) == "rotating\n"
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note("x\n", [])
