"""The Merkle-tree core of TRUST's ledger, following RFC 6962 / RFC 9162 section 2.1.

Definitions
-----------
The ledger is an ordered list of entries ``d[0], d[1], ..., d[n-1]``.  Every hash is SHA-256
(32 bytes).  Leaves and interior nodes are hashed under different one-byte prefixes, so that a
leaf can never be passed off as a node or the other way round:

* the hash of an entry (a *leaf hash*) is ``SHA-256(0x00 || entry)``;
* the hash of an interior node is ``SHA-256(0x01 || left || right)``;
* the root of the empty tree is ``SHA-256()`` of no input at all (:data:`EMPTY_ROOT`).

For ``n > 1`` entries the tree is split at ``k``, the largest power of two *strictly smaller*
than ``n``: the left child is the (perfect) tree over the first ``k`` entries and the right
child is the tree over the remaining ``n - k``.  The root of a single entry is its leaf hash.
This module works on leaf hashes throughout: callers hash their entries once with
:func:`leaf_hash` and pass the resulting list around.

Algorithms
----------
``root`` computes the tree hash bottom-up, one level at a time: neighbouring hashes are paired
and combined, and when a level has an odd count its last hash moves up unchanged.  Building the
tree this way gives exactly the split-at-the-largest-power-of-two shape above, because the left
part of every split is a perfect tree that is complete before the leftover right part starts.

``CompactRange`` keeps, for a growing list, only the roots of the perfect subtrees that the
binary digits of the current size describe (size 13 = 8 + 4 + 1 keeps three hashes).  Appending
a leaf merges equal-sized subtrees like carrying in binary addition, and the root of the whole
list is obtained by folding those few hashes from right to left, so both cost ``O(log n)``.

An *inclusion proof* (audit path) for entry ``i`` of a tree of size ``n`` lists, from the leaf
upwards, the hash of the sibling subtree at every split on the way from the root to the leaf.
The verifier tracks two numbers while walking the proof: the position of the current node on
its level and the position of the last node of that level.  The lowest bit of the position says
whether the proof hash goes on the left (odd position) or the right (even position).  When the
current node is the last one of its level and has no right sibling, it moves up unchanged, so
the positions are shifted until it becomes a left-hand sibling again.  The proof is accepted
only if every hash is consumed exactly when the last position reaches zero and the recomputed
root equals the expected one.

A *consistency proof* between sizes ``m <= n`` shows that the first ``m`` entries of the larger
tree are exactly the smaller tree.  It consists of the hashes needed to rebuild *both* roots
from the same material: the subtrees that make up the first ``m`` entries (except the largest
one when ``m`` is itself a power of two, since the verifier already knows it as the old root),
and the subtrees added afterwards.  The verifier walks the path from the last old entry
upwards like an inclusion check, but computes two hashes at once: the old root uses only the
hashes that lie to the left of the path, the new root uses all of them.

Errors
------
Verification failures raise :class:`ProofError` (a :class:`ValueError`) whose message says what
was wrong.  The proof generators raise a plain :class:`ValueError` when asked for something that
does not exist (an index beyond the tree, sizes out of order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ProofError",
    "RangeHash",
    "consistency_path",
    "consistency_proof",
    "fold_peaks",
    "inclusion_path",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_consistency_proof",
    "subtree_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash (SHA-256)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""Root hash of the tree with no entries: SHA-256 of the empty string."""


class ProofError(ValueError):
    """An inclusion or consistency proof does not verify, or its inputs are malformed."""


def leaf_hash(data: bytes) -> bytes:
    """Hash one ledger entry as a leaf: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node from its children: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (for ``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) over ``leaf_hashes``; :data:`EMPTY_ROOT` for none."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class CompactRange:
    """Incremental root of an append-only list of leaf hashes.

    Only the roots of the perfect subtrees given by the binary digits of :attr:`size` are kept,
    largest (leftmost) first; :meth:`append` and :meth:`root` both cost ``O(log size)``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._size = 0
        self._hashes: list[bytes] = []
        for h in leaf_hashes:
            self.append(h)

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Restore a range saved as (:attr:`size`, :attr:`hashes`)."""
        if size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a range of size {size} keeps {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash(h, "subtree hash", ValueError)
        new = cls()
        new._size = size
        new._hashes = list(hashes)
        return new

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the complete subtrees covering the range, largest first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at the end."""
        _check_hash(leaf, "leaf hash", ValueError)
        h = leaf
        carry = self._size
        # Each trailing 1-bit of the old size is a perfect subtree of the same height as ``h``.
        while carry & 1:
            h = node_hash(self._hashes.pop(), h)
            carry >>= 1
        self._hashes.append(h)
        self._size += 1

    def root(self) -> bytes:
        """The tree hash of all leaves appended so far."""
        return fold_peaks(self._hashes)


RangeHash = Callable[[int, int], bytes]
"""``hash_range(lo, hi)``: the tree hash of entries ``[lo, hi)``. The proof generators below
only ever ask it for ranges that RFC 9162's recursion visits, so a store of complete subtree
hashes (the ledger's) can answer with a few lookups instead of rehashing leaves."""


def _list_ranges(leaf_hashes: Sequence[bytes]) -> RangeHash:
    return lambda lo, hi: root(leaf_hashes[lo:hi])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path (RFC 9162 2.1.3.1) of entry ``index`` in the tree over ``leaf_hashes``."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"index {index} is outside a tree of size {n}")
    return inclusion_path(index, n, _list_ranges(leaf_hashes))


def inclusion_path(index: int, size: int, hash_range: RangeHash) -> list[bytes]:
    """PATH(index, D[0:size]) with subtree hashes from ``hash_range`` (``0 <= index < size``)."""
    proof: list[bytes] = []
    _path(index, 0, size, hash_range, proof)
    return proof


def _path(m: int, lo: int, hi: int, hash_range: RangeHash, out: list[bytes]) -> None:
    """Append PATH(m, D[lo:hi]) to ``out``; ``m`` is relative to ``lo``."""
    n = hi - lo
    if n == 1:
        return
    k = _split(n)
    if m < k:
        _path(m, lo, lo + k, hash_range, out)
        out.append(hash_range(lo + k, hi))
    else:
        _path(m - k, lo + k, hi, hash_range, out)
        out.append(hash_range(lo, lo + k))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """The consistency proof (RFC 9162 2.1.4.1) from the first ``size1`` to ``size2`` leaves.

    Requires ``0 < size1 <= size2 <= len(leaf_hashes)``; equal sizes give an empty proof.
    """
    if not 0 < size1 <= size2 <= len(leaf_hashes):
        raise ValueError(
            f"need 0 < size1 <= size2 <= {len(leaf_hashes)}, got size1={size1} size2={size2}"
        )
    return consistency_path(size1, size2, _list_ranges(leaf_hashes))


def consistency_path(size1: int, size2: int, hash_range: RangeHash) -> list[bytes]:
    """PROOF(size1, D[0:size2]) with subtree hashes from ``hash_range``
    (``0 < size1 <= size2``; equal sizes give an empty proof)."""
    proof: list[bytes] = []
    _subproof(size1, 0, size2, True, hash_range, proof)
    return proof


def _subproof(
    m: int, lo: int, hi: int, whole: bool, hash_range: RangeHash, out: list[bytes]
) -> None:
    """Append SUBPROOF(m, D[lo:hi], whole) to ``out``.

    ``whole`` stays true while the recursion has only gone left, i.e. while a subtree with
    ``m == n`` would be the complete old tree, whose root the verifier already has.
    """
    n = hi - lo
    if m == n:
        if not whole:
            out.append(hash_range(lo, hi))
        return
    k = _split(n)
    if m <= k:
        _subproof(m, lo, lo + k, whole, hash_range, out)
        out.append(hash_range(lo + k, hi))
    else:
        _subproof(m - k, lo + k, hi, False, hash_range, out)
        out.append(hash_range(lo, lo + k))


def fold_peaks(peaks: Sequence[bytes]) -> bytes:
    """The root of a tree from the hashes of the perfect subtrees that the binary digits of its
    size describe, largest (leftmost) first: folded from the right. Empty: the empty root."""
    if not peaks:
        return EMPTY_ROOT
    acc = peaks[-1]
    for h in reversed(peaks[:-1]):
        acc = node_hash(h, acc)
    return acc


def _check_hash(value: bytes, what: str, error: type[ValueError] = ProofError) -> None:
    if len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        _check_hash(p, f"proof component {i}")


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is entry ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 2.1.3.2.  Returns nothing on success; raises :class:`ProofError` otherwise.
    """
    if index < 0 or size < 0:
        raise ProofError(f"index and size must not be negative, got index={index} size={size}")
    if index >= size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_proof(proof)
    fn, sn = index, size - 1  # position of the current node, and of the last node, per level
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(
                f"inclusion proof has {len(proof)} components, too many for index {index} "
                f"in a tree of size {size}"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A last node without a right sibling moves up unchanged until it is a right child.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"inclusion proof has {len(proof)} components, too few for index {index} "
            f"in a tree of size {size}"
        )
    if r != root:
        raise ProofError(f"inclusion proof for index {index} does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of the one of ``size2``.

    RFC 9162 2.1.4.2, with the edge cases spelled out: ``size1 > size2`` is an error; equal
    sizes need an empty proof and equal roots (for size 0 both must be :data:`EMPTY_ROOT`);
    a proof from the empty tree to a larger one does not exist, so ``size1 == 0 < size2`` is
    an error.  Returns nothing on success; raises :class:`ProofError` otherwise.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"sizes must not be negative, got size1={size1} size2={size2}")
    if size1 > size2:
        raise ProofError(f"size1 ({size1}) is larger than size2 ({size2})")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
        if root1 != root2:
            raise ProofError(f"sizes are equal ({size1}) but the roots differ")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of nothing")
        return
    if size1 == 0:
        raise ProofError("no consistency proof exists from the empty tree (size1 is 0)")
    if not proof:
        raise ProofError(f"empty consistency proof between different sizes {size1} < {size2}")
    _check_proof(proof)

    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # The old tree is a perfect subtree of the new one; its root is the first hash.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    # Climb to the level of the largest perfect subtree that ends with the last old entry.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(
                f"consistency proof has {len(proof)} components, too many for sizes "
                f"{size1} -> {size2}"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"consistency proof has {len(proof)} components, too few for sizes {size1} -> {size2}"
        )
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to root1 (size {size1})")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to root2 (size {size2})")


# --- Subtrees (Merkle Tree Certificates draft) ---------------------------------------------
#
# A *subtree* is a range [start, end) of the entries whose hash is a node of some tree: it is
# not empty and ``start`` is a multiple of the smallest power of two >= its width (so [4, 6)
# and [0, 3) are subtrees, [2, 5) is not).  The draft of Merkle Tree Certificates
# (draft-ietf-plants-merkle-tree-certs, which the shared ``subtree*`` vectors come from) proves
# two things about one:
#
# * subtree inclusion: an entry's leaf hash is in the subtree's hash.  Inside the subtree the
#   entry sits at ``index - start`` of a tree of ``end - start`` entries, so this is RFC 9162
#   inclusion in that smaller tree;
# * subtree consistency: the subtree's hash is part of the tree of ``size`` entries.  The proof
#   follows RFC 9162's SUBPROOF recursion with the range in place of the old size: descend
#   into the half that holds the range, appending the hash of the other half; once the range
#   is the whole node, stop (its hash is the subtree's hash, known to the verifier) unless a
#   step right was taken out of a range that straddled the split, in which case that node's
#   hash is given.  Verification replays the same recursion, rebuilding the subtree's hash and
#   the tree's root from the components in order, and accepts only if every component is used
#   and both hashes match.  An empty range is consistent with any tree, with an empty proof,
#   when its hash is the empty root.


def _check_subtree(start: int, end: int, error: type[ValueError] = ProofError) -> None:
    width = end - start
    if start < 0 or width <= 0:
        raise error(f"[{start}, {end}) is not a subtree: it is empty or starts below 0")
    if start % (1 << (width - 1).bit_length()):
        raise error(f"[{start}, {end}) is not a subtree: {start} is not aligned to its width")


def subtree_inclusion_proof(
    leaf_hashes: Sequence[bytes], start: int, end: int, index: int
) -> list[bytes]:
    """The proof that entry ``index`` is in the subtree ``[start, end)`` of ``leaf_hashes``."""
    _check_subtree(start, end, ValueError)
    if not start <= index < end <= len(leaf_hashes):
        raise ValueError(f"need {start} <= index < {end} <= {len(leaf_hashes)}, got {index}")
    return inclusion_proof(leaf_hashes[start:end], index - start)


def verify_subtree_inclusion(
    start: int, end: int, index: int, leaf: bytes, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Check that ``leaf`` is entry ``index`` of the subtree ``[start, end)`` whose hash is
    ``subtree_root``; raise :class:`ProofError` if not."""
    _check_subtree(start, end)
    if not start <= index < end:
        raise ProofError(f"index {index} is outside the subtree [{start}, {end})")
    verify_inclusion(index - start, end - start, leaf, proof, subtree_root)


def subtree_consistency_proof(leaf_hashes: Sequence[bytes], start: int, end: int) -> list[bytes]:
    """The proof that the subtree ``[start, end)`` is part of the tree of all ``leaf_hashes``."""
    _check_subtree(start, end, ValueError)
    if end > len(leaf_hashes):
        raise ValueError(f"the subtree [{start}, {end}) ends beyond {len(leaf_hashes)} entries")
    proof: list[bytes] = []
    _subtree_subproof(start, end, leaf_hashes, 0, len(leaf_hashes), True, proof)
    return proof


def _subtree_subproof(
    start: int,
    end: int,
    leaves: Sequence[bytes],
    lo: int,
    hi: int,
    known: bool,
    out: list[bytes],
) -> None:
    n = hi - lo
    if start == 0 and end == n:
        if not known:
            out.append(root(leaves[lo:hi]))
        return
    k = _split(n)
    if end <= k:
        _subtree_subproof(start, end, leaves, lo, lo + k, known, out)
        out.append(root(leaves[lo + k : hi]))
    elif start >= k:
        _subtree_subproof(start - k, end - k, leaves, lo + k, hi, known, out)
        out.append(root(leaves[lo : lo + k]))
    else:  # an aligned range that straddles the split starts at 0
        _subtree_subproof(0, end - k, leaves, lo + k, hi, False, out)
        out.append(root(leaves[lo : lo + k]))


def verify_subtree_consistency(
    start: int,
    end: int,
    size: int,
    proof: Sequence[bytes],
    subtree_root: bytes,
    tree_root: bytes,
) -> None:
    """Check that the subtree ``[start, end)`` with hash ``subtree_root`` is part of the tree
    of ``size`` entries with root ``tree_root``; raise :class:`ProofError` if not."""
    _check_proof(proof)
    if start == end:
        if not 0 <= start <= size:
            raise ProofError(f"the empty range at {start} is outside a tree of size {size}")
        if proof:
            raise ProofError("an empty subtree needs an empty proof")
        if subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree's hash must be the empty root")
        return
    _check_subtree(start, end)
    if end > size:
        raise ProofError(f"the subtree [{start}, {end}) ends beyond a tree of size {size}")
    components = iter(proof)
    used = 0

    def take() -> bytes:
        nonlocal used
        component = next(components, None)
        if component is None:
            raise ProofError(f"the proof has too few components ({len(proof)})")
        used += 1
        return component

    def rebuild(lo: int, hi: int, n: int, known: bool) -> tuple[bytes, bytes]:
        """(the subtree's part in this node, this node's hash), consuming components."""
        if lo == 0 and hi == n:
            if known:
                return subtree_root, subtree_root
            given = take()
            return given, given
        k = _split(n)
        if hi <= k:
            part, node = rebuild(lo, hi, k, known)
            return part, node_hash(node, take())
        if lo >= k:
            part, node = rebuild(lo - k, hi - k, n - k, known)
            return part, node_hash(take(), node)
        part, node = rebuild(0, hi - k, n - k, False)
        left = take()
        return node_hash(left, part), node_hash(left, node)

    part, whole = rebuild(start, end, size, True)
    if used != len(proof):
        raise ProofError(f"the proof has too many components ({len(proof)}, {used} used)")
    if part != subtree_root:
        raise ProofError("the proof does not lead to the subtree's hash")
    if whole != tree_root:
        raise ProofError("the proof does not lead to the tree's root")
