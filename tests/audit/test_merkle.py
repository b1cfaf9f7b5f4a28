import base64
import hashlib
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from domicile.audit.errors import ProofError
from domicile.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeColumns,
    NodeId,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    range_node_ids,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

MAX_PROOF_SIZE = 70
MAX_RANGE_SIZE = 200

LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(MAX_RANGE_SIZE)]


# --- Reference: RFC 9162 §2.1 written out recursively, over LEAVES[lo:hi]. ---


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def ref_mth(lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return LEAVES[lo]
    k = _split(n)
    return node_hash(ref_mth(lo, lo + k), ref_mth(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, lo, lo + k), ref_mth(lo + k, hi)]
    return [*ref_path(m - k, lo + k, hi), ref_mth(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if b else [ref_mth(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, b), ref_mth(lo + k, hi)]
    return [*ref_subproof(m - k, lo + k, hi, False), ref_mth(lo, lo + k)]


@pytest.fixture(scope="module")
def store() -> dict[NodeId, bytes]:
    """Every perfect node of the largest tree, as the server would have stored them."""
    nodes: dict[NodeId, bytes] = {}
    cr = CompactRange()
    for h in LEAVES:
        nodes.update(cr.append(h))
    return nodes


def _check_within(ids: Sequence[NodeId], size: int) -> None:
    # A plan for a tree of `size` must only name nodes that already exist at that size.
    for level, index in ids:
        assert (index + 1) << level <= size, (level, index, size)


# --- Hashing and compact ranges ---


def test_hashes_are_domain_separated() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


def test_compact_range_matches_reference() -> None:
    cr = CompactRange()
    stored: dict[NodeId, bytes] = {}
    assert cr.root() == EMPTY_ROOT
    for size in range(1, MAX_RANGE_SIZE + 1):
        for node, h in cr.append(LEAVES[size - 1]):
            assert node not in stored
            level, index = node
            assert h == ref_mth(index << level, (index + 1) << level)
            stored[node] = h
        assert cr.size == size
        assert cr.root() == ref_mth(0, size)
        # The appends stored exactly the perfect nodes of [0, size): 2*size - popcount(size).
        assert len(stored) == 2 * size - size.bit_count()
        loaded = CompactRange.from_nodes(size, stored)
        assert loaded.hashes == cr.hashes
        assert loaded.root() == cr.root()


def test_extend_matches_append(store: dict[NodeId, bytes]) -> None:
    for start, stop in ((0, 1), (0, 64), (37, 50), (5, 6), (63, 64)):
        one_by_one = CompactRange.from_nodes(start, store)
        completed: list[tuple[NodeId, bytes]] = []
        for h in LEAVES[start:stop]:
            completed.extend(one_by_one.append(h))
        bulk = CompactRange.from_nodes(start, store)
        columns = NodeColumns()
        bulk.extend(LEAVES[start:stop], columns)
        nodes = zip(columns.levels, columns.indices, columns.hashes, strict=True)
        assert [((level, idx), h) for level, idx, h in nodes] == completed
        assert (bulk.size, bulk.hashes) == (one_by_one.size, one_by_one.hashes)
        bulk.extend([])
        assert bulk.root() == ref_mth(0, stop)


def test_extend_stops_at_a_bad_hash() -> None:
    cr = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        cr.extend([LEAVES[0], LEAVES[1], b"short"])
    assert (cr.size, cr.root()) == (2, ref_mth(0, 2))  # what it took before is consistent


def test_range_node_ids() -> None:
    assert range_node_ids(0) == []
    assert range_node_ids(1) == [(0, 0)]
    assert range_node_ids(13) == [(3, 0), (2, 2), (0, 12)]
    assert range_node_ids(16) == [(4, 0)]


def test_compact_range_continues_after_loading(store: dict[NodeId, bytes]) -> None:
    cr = CompactRange.from_nodes(37, store)
    for h in LEAVES[37:50]:
        for node, value in cr.append(h):
            assert store[node] == value
    assert cr.root() == ref_mth(0, 50)


def test_compact_range_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="needs 2 range hashes"):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError, match="non-negative"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="missing stored nodes"):
        CompactRange.from_nodes(3, {(1, 0): EMPTY_ROOT})
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


# --- Proof plans against the reference, and round trips through the verifiers ---


def test_inclusion_plans_match_reference(store: dict[NodeId, bytes]) -> None:
    for size in range(1, MAX_PROOF_SIZE + 1):
        root = ref_mth(0, size)
        for index in range(size):
            plan = inclusion_plan(index, size)
            _check_within(plan.node_ids, size)
            proof = plan.assemble(store)
            assert proof == ref_path(index, 0, size), (index, size)
            verify_inclusion(LEAVES[index], index, size, proof, root)


def test_consistency_plans_match_reference(store: dict[NodeId, bytes]) -> None:
    for size2 in range(1, MAX_PROOF_SIZE + 1):
        root2 = ref_mth(0, size2)
        for size1 in range(1, size2 + 1):
            plan = consistency_plan(size1, size2)
            _check_within(plan.node_ids, size2)
            proof = plan.assemble(store)
            assert proof == ref_subproof(size1, 0, size2, True), (size1, size2)
            verify_consistency(size1, size2, proof, ref_mth(0, size1), root2)


def test_plan_needs_only_one_ephemeral_node() -> None:
    # Leaf 0 of 7: sibling leaf 1, node (1, 1), then MTH(4:7) rehashed from (1, 2) and (0, 6).
    plan = inclusion_plan(0, 7)
    assert plan.groups == (((0, 1),), ((1, 1),), ((1, 2), (0, 6)))
    assert plan.node_ids == [(0, 1), (1, 1), (1, 2), (0, 6)]
    for size in range(1, MAX_PROOF_SIZE + 1):
        for index in range(size):
            assert sum(len(g) > 1 for g in inclusion_plan(index, size).groups) <= 1


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 3)])
def test_inclusion_plan_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="index"):
        inclusion_plan(index, size)


@pytest.mark.parametrize(("size1", "size2"), [(0, 0), (0, 3), (4, 3), (-1, 2)])
def test_consistency_plan_rejects_bad_arguments(size1: int, size2: int) -> None:
    with pytest.raises(ValueError, match="0 < size1 <= size2"):
        consistency_plan(size1, size2)


def test_assemble_names_missing_nodes() -> None:
    with pytest.raises(ValueError, match=r"missing stored nodes for proof: \[\(1, 2\)"):
        inclusion_plan(0, 7).assemble({(0, 1): EMPTY_ROOT, (1, 1): EMPTY_ROOT})


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    return [bytes([h[0] ^ 1]) + h[1:] if j == i else h for j, h in enumerate(proof)]


def test_tampered_inclusion_proofs_fail(store: dict[NodeId, bytes]) -> None:
    for size in (1, 2, 7, 8, 13, 64):
        root = ref_mth(0, size)
        for index in range(size):
            proof = inclusion_plan(index, size).assemble(store)
            for i in range(len(proof)):
                with pytest.raises(ProofError, match="does not match"):
                    verify_inclusion(LEAVES[index], index, size, _flip(proof, i), root)
            with pytest.raises(ProofError, match="hashes, want"):
                verify_inclusion(LEAVES[index], index, size, [*proof, EMPTY_ROOT], root)
            if size > 1:
                with pytest.raises(ProofError):
                    verify_inclusion(LEAVES[index], (index + 1) % size, size, proof, root)
            assert root_from_inclusion(LEAVES[index], index, size, proof) == root


def test_tampered_consistency_proofs_fail(store: dict[NodeId, bytes]) -> None:
    for size2 in (2, 7, 8, 13, 64):
        root2 = ref_mth(0, size2)
        for size1 in range(1, size2):
            root1 = ref_mth(0, size1)
            proof = consistency_plan(size1, size2).assemble(store)
            for i in range(len(proof)):
                with pytest.raises(ProofError, match="does not match"):
                    verify_consistency(size1, size2, _flip(proof, i), root1, root2)
            with pytest.raises(ProofError, match="does not match"):
                verify_consistency(size1, size2, proof, root2, root1)
            with pytest.raises(ProofError, match=r"hashes, want|is empty"):
                verify_consistency(size1, size2, proof[:-1], root1, root2)


def test_verifiers_reject_malformed_input() -> None:
    with pytest.raises(ProofError, match="out of range"):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="leaf hash is 3 bytes"):
        verify_inclusion(b"abc", 0, 1, [], b"abc")
    with pytest.raises(ProofError, match="proof hash 0 is 0 bytes"):
        verify_inclusion(LEAVES[0], 0, 2, [b""], EMPTY_ROOT)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="size1 <= size2"):
        verify_consistency(5, 4, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="proof is empty"):
        verify_consistency(4, 5, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(5, 5, [], LEAVES[0], LEAVES[0])


# --- transparency-dev/merkle vectors, read in place ---


def _vector_root() -> Path:
    env = os.environ.get("DOMICILE_TESTDATA")
    base = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "testdata"
    return base / "merkle"


def _vectors(kind: str) -> list[Any]:
    folder = _vector_root() / kind
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    if not files:
        reason = f"no Merkle test vectors in {folder}"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="missing")]
    return [pytest.param(f, id=f.relative_to(folder).as_posix()) for f in files]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(data: dict[str, Any]) -> list[bytes]:
    # Go marshals an empty proof as null.
    return [_b64(h) for h in data["proof"] or []]


@pytest.mark.parametrize("path", _vectors("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vectors("consistency"))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
