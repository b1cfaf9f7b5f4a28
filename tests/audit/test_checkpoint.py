import base64

import pytest

from domicile.audit.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    open_checkpoint,
    sign_checkpoint,
)
from domicile.audit.errors import CheckpointError, NoteError
from domicile.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from domicile.audit.note import Signer

ORIGIN = "domicile/test/eu-residency"
ROOT = bytes(range(32))
ROOT64 = base64.b64encode(ROOT).decode()

# The example from c2sp.org/tlog-checkpoint.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def test_body_format() -> None:
    cp = Checkpoint(ORIGIN, 42, ROOT)
    assert cp.body() == f"{ORIGIN}\n42\n{ROOT64}\n"
    assert Checkpoint(ORIGIN, 0, EMPTY_ROOT).body() == (
        f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )


def test_parse_spec_example() -> None:
    cp = Checkpoint.parse(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == SPEC_BODY


def test_extensions_round_trip() -> None:
    cp = Checkpoint.parse(f"{ORIGIN}\n7\n{ROOT64}\nfirst ext\n— second ext\n")
    assert cp.extensions == ("first ext", "— second ext")
    assert Checkpoint.parse(cp.body()) == cp


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n42\n{ROOT64}", "end with a newline"),
        (f"{ORIGIN}\n42\n", "at least 3 lines"),
        (f"\n42\n{ROOT64}\n", "origin"),
        (f"{ORIGIN}\n042\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n00\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n+42\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n-1\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n 42\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n4_2\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n\u0664\u0662\n{ROOT64}\n", "canonical decimal"),  # Arabic-Indic 42
        (f"{ORIGIN}\n\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n{MAX_TREE_SIZE + 1}\n{ROOT64}\n", "out of range"),
        (f"{ORIGIN}\n{'9' * 5000}\n{ROOT64}\n", "canonical decimal"),
        (f"{ORIGIN}\n42\n{ROOT64[:-1]}\n", "not base64"),
        (f"{ORIGIN}\n42\n{ROOT64} \n", "not base64"),
        (f"{ORIGIN}\n42\n{ROOT64[:-2]}B=\n", "not canonical"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n42\n{ROOT64}\n\n", "extension line"),
        (f"{ORIGIN}\n42\n{ROOT64}\next\n\nmore\n", "extension line"),
    ],
)
def test_parse_is_strict(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.parse(text)


def test_parse_accepts_largest_size() -> None:
    assert Checkpoint.parse(f"{ORIGIN}\n{MAX_TREE_SIZE}\n{ROOT64}\n").size == MAX_TREE_SIZE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"size": -1},
        {"root_hash": b"short"},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
    ],
)
def test_constructor_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"origin": ORIGIN, "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(CheckpointError):
        Checkpoint(**args)  # type: ignore[arg-type]


def test_sign_and_open(signer: Signer) -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT)
    note = sign_checkpoint(cp, signer)
    assert note.startswith(cp.body() + "\n— " + ORIGIN + " ")
    assert open_checkpoint(note, [signer.verifier()]) == cp
    assert open_checkpoint(note, [signer.verifier()], origin=ORIGIN) == cp


def test_open_rejects_other_log(signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint("domicile/test/other", 3, ROOT), signer)
    with pytest.raises(CheckpointError, match="expected 'domicile/test/eu-residency'"):
        open_checkpoint(note, [signer.verifier()], origin=ORIGIN)


def test_open_rejects_unsigned_or_tampered(signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), signer)
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_checkpoint(note, [Signer.generate(ORIGIN).verifier()])
    with pytest.raises(NoteError, match="invalid signature"):
        open_checkpoint(note.replace("\n3\n", "\n4\n"), [signer.verifier()])


def test_open_rejects_signed_garbage(signer: Signer) -> None:
    with pytest.raises(CheckpointError, match="at least 3 lines"):
        open_checkpoint(signer.sign("hello\n"), [signer.verifier()])


def test_checkpoints_of_a_growing_log(signer: Signer) -> None:
    """The flow an auditor follows: two signed checkpoints, then proofs between them."""
    log, stored = CompactRange(), dict[NodeId, bytes]()
    leaves = [b'{"event":"create","n":%d}' % i for i in range(21)]
    notes = {}
    for i, leaf in enumerate(leaves, start=1):
        stored.update(log.append(leaf_hash(leaf)))
        if i in (13, 21):
            notes[i] = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer)

    old = open_checkpoint(notes[13], [signer.verifier()], origin=ORIGIN)
    new = open_checkpoint(notes[21], [signer.verifier()], origin=ORIGIN)
    proof = consistency_plan(old.size, new.size).assemble(stored)
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    for index in (0, 12, 20):
        path = inclusion_plan(index, new.size).assemble(stored)
        verify_inclusion(leaf_hash(leaves[index]), index, new.size, path, new.root_hash)
