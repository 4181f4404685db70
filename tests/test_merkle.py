"""Tests for trust.merkle: RFC 6962 / RFC 9162 Merkle trees, proofs and their verification.

Conformance vectors live in ``<shared_data>/trust/merkle-vectors`` (transparency-dev/merkle's
``testdata``).  ``inclusion/`` and ``consistency/`` are plain RFC 9162 and are all checked.
``subtreeinclusion/`` and ``subtreeconsistency/`` come from the Merkle Tree Certificates draft:
they prove a leaf in, or the consistency of, an arbitrary subtree ``[start, end)``; all of them
are checked with :func:`verify_subtree_inclusion` and :func:`verify_subtree_consistency`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trust.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    subtree_consistency_proof,
    subtree_inclusion_proof,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

VECTORS = Path("trust") / "merkle-vectors"
# Collection has to know the vector files before fixtures exist, so it looks in the same place
# as the ``shared_data`` fixture (``../shared/data`` beside the project); the tests then read
# the files through the fixture, which skips them when the folder is missing.
_COLLECT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / VECTORS

EXPECTED_COUNTS = {
    "inclusion": 98,
    "consistency": 98,
    "subtreeinclusion": 204,
    "subtreeconsistency": 118,
}
EXPECTED_TOTAL = 518


def _vector_files(folder: str) -> list[str]:
    base = _COLLECT_ROOT / folder
    if not base.is_dir():
        return []
    return sorted(p.relative_to(_COLLECT_ROOT).as_posix() for p in base.rglob("*.json"))


def _load(shared_data: Path, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_data / VECTORS / rel).read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(data: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in data["proof"] or []]


def _ids(files: list[str]) -> list[str]:
    return [f.removesuffix(".json") for f in files]


INCLUSION = _vector_files("inclusion")
CONSISTENCY = _vector_files("consistency")
SUBTREE_INCLUSION = _vector_files("subtreeinclusion")
SUBTREE_CONSISTENCY = _vector_files("subtreeconsistency")


def _outcome(check: Any, *args: Any) -> bool:
    """Run a verifier; True when it rejected the input with ProofError."""
    try:
        check(*args)
    except ProofError:
        return True
    return False


# --- conformance vectors -------------------------------------------------------------------


def test_vector_counts(shared_data: Path) -> None:
    base = shared_data / VECTORS
    counts = {name: len(list((base / name).rglob("*.json"))) for name in EXPECTED_COUNTS}
    assert counts == EXPECTED_COUNTS
    assert sum(counts.values()) == EXPECTED_TOTAL
    assert len(INCLUSION) == EXPECTED_COUNTS["inclusion"]
    assert len(CONSISTENCY) == EXPECTED_COUNTS["consistency"]
    assert len(SUBTREE_INCLUSION) == EXPECTED_COUNTS["subtreeinclusion"]
    assert len(SUBTREE_CONSISTENCY) == EXPECTED_COUNTS["subtreeconsistency"]


@pytest.mark.parametrize("rel", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(shared_data: Path, rel: str) -> None:
    d = _load(shared_data, rel)
    rejected = _outcome(
        verify_inclusion,
        d["leafIdx"],
        d["treeSize"],
        _b64(d["leafHash"]),
        _proof(d),
        _b64(d["root"]),
    )
    assert rejected is d["wantErr"], d["desc"]


@pytest.mark.parametrize("rel", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(shared_data: Path, rel: str) -> None:
    d = _load(shared_data, rel)
    rejected = _outcome(
        verify_consistency, d["size1"], d["size2"], _proof(d), _b64(d["root1"]), _b64(d["root2"])
    )
    assert rejected is d["wantErr"], d["desc"]


@pytest.mark.parametrize("rel", SUBTREE_INCLUSION, ids=_ids(SUBTREE_INCLUSION))
def test_subtree_inclusion_vector(shared_data: Path, rel: str) -> None:
    d = _load(shared_data, rel)
    rejected = _outcome(
        verify_subtree_inclusion,
        d["start"],
        d["end"],
        d["leafIdx"],
        _b64(d["leafHash"]),
        _proof(d),
        _b64(d["root"]),
    )
    assert rejected is d["wantErr"], d["desc"]


@pytest.mark.parametrize("rel", SUBTREE_CONSISTENCY, ids=_ids(SUBTREE_CONSISTENCY))
def test_subtree_consistency_vector(shared_data: Path, rel: str) -> None:
    d = _load(shared_data, rel)
    rejected = _outcome(
        verify_subtree_consistency,
        d["start"],
        d["end"],
        d["size"],
        _proof(d),
        _b64(d["root1"]),
        _b64(d["root2"]),
    )
    assert rejected is d["wantErr"], d["desc"]


def test_subtree_proofs_round_trip_and_reject_tampering() -> None:
    """Every subtree of trees up to 40 entries: generated proofs verify; a flipped bit, a
    missing or extra component, or another subtree's hash does not."""
    leaves = [leaf_hash(b"leaf-%d" % i) for i in range(40)]
    for size in range(1, 41):
        tree = root(leaves[:size])
        for width in (1, 2, 3, 4, 5, 8, 13, 16):
            for start in range(0, size - width + 1, 1 << (width - 1).bit_length()):
                end = start + width
                sub = root(leaves[start:end])
                proof = subtree_consistency_proof(leaves[:size], start, end)
                verify_subtree_consistency(start, end, size, proof, sub, tree)
                for index in (start, end - 1):
                    path = subtree_inclusion_proof(leaves[:size], start, end, index)
                    verify_subtree_inclusion(start, end, index, leaves[index], path, sub)
                if proof:
                    bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                    with pytest.raises(ProofError):
                        verify_subtree_consistency(start, end, size, bad, sub, tree)
                    with pytest.raises(ProofError):
                        verify_subtree_consistency(start, end, size, proof[1:], sub, tree)
                with pytest.raises(ProofError):
                    verify_subtree_consistency(start, end, size, [*proof, sub], sub, tree)
                if width > 1:
                    with pytest.raises(ProofError):
                        verify_subtree_consistency(start, end, size, proof, leaves[start], tree)


def test_ranges_that_are_not_subtrees_are_rejected() -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(8)]
    with pytest.raises(ValueError, match="not aligned"):
        subtree_consistency_proof(leaves, 2, 5)
    with pytest.raises(ProofError, match="not aligned"):
        verify_subtree_inclusion(2, 5, 3, leaves[3], [], root(leaves[2:5]))


# --- RFC known answers -----------------------------------------------------------------------


def test_empty_root_known_answer() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hash_definitions() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    assert len(leaf_hash(b"x")) == HASH_SIZE


def test_root_shape_small_trees() -> None:
    h = [leaf_hash(b"%d" % i) for i in range(7)]
    assert root(h[:1]) == h[0]
    assert root(h[:2]) == node_hash(h[0], h[1])
    assert root(h[:3]) == node_hash(node_hash(h[0], h[1]), h[2])
    # 7 leaves split 4 + 3, and the 3 split 2 + 1.
    left = node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3]))
    right = node_hash(node_hash(h[4], h[5]), h[6])
    assert root(h) == node_hash(left, right)


def test_root_matches_rfc_recursive_definition() -> None:
    def mth(leaves: list[bytes]) -> bytes:
        n = len(leaves)
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return leaves[0]
        k = 1
        while k * 2 < n:
            k *= 2
        return node_hash(mth(leaves[:k]), mth(leaves[k:]))

    leaves = [leaf_hash(b"leaf-%d" % i) for i in range(70)]
    for n in range(71):
        assert root(leaves[:n]) == mth(leaves[:n])


def test_rfc_example_proofs_d0_to_d6() -> None:
    """The RFC's worked example: a tree of seven leaves (names here are local, not the RFC's)."""
    d = [leaf_hash(b"%d" % i) for i in range(7)]
    a, b, c, dd, e, f, g = d
    h = node_hash
    k, i, j, l_ = h(a, b), h(c, dd), h(e, f), g
    assert inclusion_proof(d, 0) == [b, i, h(j, l_)]
    assert inclusion_proof(d, 3) == [c, k, h(j, l_)]
    assert inclusion_proof(d, 4) == [f, g, h(k, i)]
    assert inclusion_proof(d, 6) == [j, h(k, i)]
    assert consistency_proof(d, 3, 7) == [c, dd, k, h(j, l_)]
    assert consistency_proof(d, 4, 7) == [h(j, l_)]
    assert consistency_proof(d, 6, 7) == [j, g, h(k, i)]
    assert consistency_proof(d, 7, 7) == []


# --- property tests --------------------------------------------------------------------------

LEAVES = [leaf_hash(b"leaf-%d" % i) for i in range(2 * 70 + 2)]
ROOTS = [root(LEAVES[:n]) for n in range(len(LEAVES) + 1)]
SIZES = range(1, 71)


def _flip_bit(rng: random.Random, value: bytes) -> bytes:
    pos = rng.randrange(len(value) * 8)
    out = bytearray(value)
    out[pos // 8] ^= 1 << (pos % 8)
    return bytes(out)


def _sides(index: int, size: int) -> list[bool]:
    """For each proof hash from the leaf up: does it go on the left?  (RFC 9162 PATH shape.)"""
    if size == 1:
        return []
    k = 1
    while k * 2 < size:
        k *= 2
    if index < k:
        return [*_sides(index, k), False]
    return [*_sides(index - k, size - k), True]


@dataclass(frozen=True)
class _Incl:
    index: int
    size: int
    proof: list[bytes]

    def rejected(self, **change: Any) -> bool:
        args: dict[str, Any] = {
            "index": self.index,
            "size": self.size,
            "leaf_hash": LEAVES[self.index],
            "proof": self.proof,
            "root": ROOTS[self.size],
        }
        args.update(change)
        return _outcome(
            verify_inclusion,
            args["index"],
            args["size"],
            args["leaf_hash"],
            args["proof"],
            args["root"],
        )


@pytest.mark.parametrize("n", SIZES)
def test_inclusion_proofs_verify_and_tampering_is_rejected(n: int) -> None:
    rng = random.Random(6962 * 1000 + n)
    tree = LEAVES[:n]
    for i in range(n):
        c = _Incl(i, n, inclusion_proof(tree, i))
        assert not c.rejected(), (i, n)
        for pos in range(len(c.proof)):
            bad = list(c.proof)
            bad[pos] = _flip_bit(rng, bad[pos])
            assert c.rejected(proof=bad), ("flipped", i, n, pos)
        if c.proof:
            assert c.rejected(proof=c.proof[:-1]), ("truncated", i, n)
            assert c.rejected(proof=c.proof[1:]), ("first removed", i, n)
        assert c.rejected(proof=[*c.proof, LEAVES[0]]), ("extra last", i, n)
        assert c.rejected(proof=[LEAVES[0], *c.proof]), ("extra first", i, n)
        assert c.rejected(leaf_hash=_flip_bit(rng, LEAVES[i])), ("leaf", i, n)
        assert c.rejected(root=_flip_bit(rng, ROOTS[n])), ("root", i, n)
        assert c.rejected(leaf_hash=LEAVES[i][:-1]), ("short leaf", i, n)
        for j in {i - 1, i + 1, i ^ 1, i ^ 2, n, n + 1, -1}:
            if j != i:
                assert c.rejected(index=j), ("index", i, j, n)
        for m in {n - 1, n + 1, 2 * n, n // 2, i}:
            if m == n or m < 0:
                continue
            # Claiming another size together with that size's root never verifies.
            assert c.rejected(size=m, root=ROOTS[m]), ("size", i, n, m)
            # RFC 9162 proofs do not commit to the size on their own (the signed tree head
            # does): with the original root, another size passes exactly when the audit path
            # has the same shape there.
            same_shape = m > i and _sides(i, m) == _sides(i, n)
            assert c.rejected(size=m) is not same_shape, ("size, same root", i, n, m)


def test_inclusion_rejects_malformed_input() -> None:
    proof = inclusion_proof(LEAVES[:5], 2)
    verify_inclusion(2, 5, LEAVES[2], proof, ROOTS[5])
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion(5, 5, LEAVES[2], proof, ROOTS[5])
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(-1, 5, LEAVES[2], proof, ROOTS[5])
    with pytest.raises(ProofError, match="too few"):
        verify_inclusion(2, 5, LEAVES[2], proof[:-1], ROOTS[5])
    with pytest.raises(ProofError, match="too many"):
        verify_inclusion(2, 5, LEAVES[2], [*proof, LEAVES[0]], ROOTS[5])
    with pytest.raises(ProofError, match="32 bytes"):
        verify_inclusion(2, 5, LEAVES[2], [proof[0][:-1], *proof[1:]], ROOTS[5])
    with pytest.raises(ProofError, match="expected root"):
        verify_inclusion(2, 5, LEAVES[3], proof, ROOTS[5])
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(LEAVES[:5], 5)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof([], 0)
    verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])


@pytest.mark.parametrize("n", SIZES)
def test_consistency_proofs_verify_and_tampering_is_rejected(n: int) -> None:
    rng = random.Random(9162 * 1000 + n)
    for m in range(1, n + 1):
        proof = consistency_proof(LEAVES, m, n)
        assert proof == consistency_proof(LEAVES[:n], m, n)

        def rejected(
            p: list[bytes] = proof,
            m1: int = m,
            n2: int = n,
            r1: bytes = ROOTS[m],
            r2: bytes = ROOTS[n],
        ) -> bool:
            return _outcome(verify_consistency, m1, n2, p, r1, r2)

        assert not rejected(), (m, n)
        for pos in range(len(proof)):
            bad = list(proof)
            bad[pos] = _flip_bit(rng, bad[pos])
            assert rejected(p=bad), ("flipped", m, n, pos)
        if proof:
            assert rejected(p=proof[:-1]), ("truncated", m, n)
            assert rejected(p=proof[1:]), ("first removed", m, n)
        assert rejected(p=[*proof, LEAVES[0]]), ("extra last", m, n)
        assert rejected(p=[LEAVES[0], *proof]), ("extra first", m, n)
        assert rejected(r1=_flip_bit(rng, ROOTS[m])), ("root1", m, n)
        assert rejected(r2=_flip_bit(rng, ROOTS[n])), ("root2", m, n)
        if m < n:
            assert rejected(r1=ROOTS[n], r2=ROOTS[m]), ("swapped roots", m, n)
        # Other sizes, claimed with the roots of those sizes, never verify with this proof.
        for m1, n2 in {(m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1), (m // 2, n), (m, 2 * n)}:
            if (m1, n2) == (m, n) or m1 < 1 or m1 > n2:
                continue
            assert rejected(m1=m1, n2=n2, r1=ROOTS[m1], r2=ROOTS[n2]), ("sizes", m, n, m1, n2)


def test_consistency_edge_cases() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(3, 3, [], ROOTS[3], ROOTS[3])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], b"x" * 32, b"x" * 32)
    with pytest.raises(ProofError, match="not empty"):
        verify_consistency(3, 3, [ROOTS[3]], ROOTS[3], ROOTS[3])
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(3, 3, [], ROOTS[3], ROOTS[4])
    with pytest.raises(ProofError, match="larger"):
        verify_consistency(4, 3, [], ROOTS[4], ROOTS[3])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 3, [], EMPTY_ROOT, ROOTS[3])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 3, [ROOTS[3]], EMPTY_ROOT, ROOTS[3])
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(2, 3, [], ROOTS[2], ROOTS[3])
    with pytest.raises(ProofError, match="negative"):
        verify_consistency(-1, 3, [], ROOTS[2], ROOTS[3])
    proof = consistency_proof(LEAVES, 3, 7)
    with pytest.raises(ProofError, match="32 bytes"):
        verify_consistency(3, 7, [*proof[:-1], proof[-1] + b"\x00"], ROOTS[3], ROOTS[7])
    with pytest.raises(ProofError, match="too few"):
        verify_consistency(3, 7, proof[:-1], ROOTS[3], ROOTS[7])
    with pytest.raises(ProofError, match="too many"):
        verify_consistency(3, 7, [*proof, LEAVES[0]], ROOTS[3], ROOTS[7])
    for size1, size2 in [(0, 3), (4, 3), (1, 200)]:
        with pytest.raises(ValueError, match="size1"):
            consistency_proof(LEAVES[:10], size1, size2)


def test_compact_range_matches_root_at_every_size() -> None:
    rng = CompactRange()
    assert rng.size == 0
    assert rng.hashes == ()
    for n, h in enumerate(LEAVES, start=1):
        rng.append(h)
        assert rng.size == n
        assert len(rng.hashes) == n.bit_count()
        assert rng.root() == ROOTS[n], n
        restored = CompactRange.from_state(rng.size, rng.hashes)
        assert restored.root() == ROOTS[n]
    assert CompactRange(LEAVES[:13]).root() == ROOTS[13]
    with pytest.raises(ValueError, match="32 bytes"):
        rng.append(b"short")
    with pytest.raises(ValueError, match="keeps 3 hashes"):
        CompactRange.from_state(13, LEAVES[:2])
    with pytest.raises(ValueError, match="negative"):
        CompactRange.from_state(-1, [])
