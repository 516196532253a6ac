"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion proofs and consistency proofs.

Pure functions over SHA-256 (no I/O, no storage). The tree is the one of RFC 9162 §2.1.1: leaves
are hashed with a 0x00 prefix and interior nodes with a 0x01 prefix (second-preimage resistance,
§2.1.1), and a tree of n > 1 leaves splits at the largest power of two smaller than n.

Generation (`inclusion_proof`, `consistency_proof`) follows §2.1.3.1 and §2.1.4.1; verification
(`verify_inclusion`, `verify_consistency`) implements the algorithms of §2.1.3.2 and §2.1.4.2.

Verification raises; it never returns False. Every failure — wrong root, wrong proof length,
out-of-range index or sizes, malformed hashes — raises `ProofError`, so a caller cannot forget to
check a return value. Hashes are compared with `hmac.compare_digest`.

All functions work on *leaf hashes* (the output of `leaf_hash`), never on raw entries, so the
audit log can persist 32-byte leaf hashes and rebuild proofs without re-reading entries.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "MerkleAccumulator",
    "MerkleTree",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

MAX_TREE_SIZE: Final = (1 << 64) - 1
"""Largest tree size accepted: RFC 9162 carries tree sizes and indices as uint64 (§4.8, §4.10)."""

_MAX_PROOF_LENGTH: Final = 64
"""No inclusion or consistency proof of a tree of at most 2**64 - 1 leaves has more nodes."""

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}) = HASH() — the hash of the empty tree (RFC 9162 §2.1.1)."""


class ProofError(ValueError):
    """A Merkle proof did not verify, or its parameters are out of range."""


# --- Hashing (RFC 9162 §2.1.1) -------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0)) — the hash of one leaf entry (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right) — the hash of an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k, the largest power of two with k < n, for n > 1 (the split point of RFC 9162 §2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, _BYTES_LIKE) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be a {HASH_SIZE}-byte hash")


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    if len(hashes) > MAX_TREE_SIZE:
        raise ProofError("tree is too large")
    for h in hashes:
        _check_hash(h, "every leaf hash")


def _subtree_root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for 0 <= lo < hi <= len(hashes), without recursion.

    Hashing level by level and carrying an unpaired last node up unchanged builds exactly the tree
    of RFC 9162 §2.1.1 (the left subtree is always the perfect tree of the largest power of two
    below n). n - 1 node hashes, O(n) time.
    """
    level = [bytes(h) for h in hashes[lo:hi]]
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]), the Merkle Tree Hash of a list of leaf hashes (RFC 9162 §2.1.1).

    `hashes` are leaf hashes (`leaf_hash(entry)`), each `HASH_SIZE` bytes; an empty list gives
    `EMPTY_ROOT`. O(n) time, no recursion.
    """
    _check_leaf_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    return _subtree_root(hashes, 0, len(hashes))


# --- Generating proofs (RFC 9162 §2.1.3.1, §2.1.4.1) ---------------------------------------------


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]): the inclusion proof of leaf `index` among `hashes` (RFC 9162 §2.1.3.1).

    Nodes are ordered from the leaf's sibling up to the child of the root, as the RFC's recursive
    definition PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) produces them. O(n) time: the
    subtrees hashed along the way are disjoint.

    Raises ProofError unless 0 <= index < len(hashes).
    """
    _check_leaf_hashes(hashes)
    n = len(hashes)
    if not 0 <= index < n:
        raise ProofError("leaf index out of range")
    top_down: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            top_down.append(_subtree_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            top_down.append(_subtree_root(hashes, lo, lo + k))
            lo += k
    top_down.reverse()
    return top_down


def consistency_proof(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]): proves the first `old_size` leaves form a prefix (RFC 9162 §2.1.4.1).

    PROOF(m, D[n]) = SUBPROOF(m, D[n], true), unrolled into a loop; O(n) time. The proof between a
    tree and itself, and from the empty tree, is empty.

    Raises ProofError unless 0 <= old_size <= len(hashes).
    """
    _check_leaf_hashes(hashes)
    n = len(hashes)
    if not 0 <= old_size <= n:
        raise ProofError("old tree size out of range")
    if old_size in (0, n):
        return []
    # SUBPROOF(m, D[lo:hi], b): descend, remembering the sibling subtree each level appends.
    appended: list[bytes] = []
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            appended.append(_subtree_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            appended.append(_subtree_root(hashes, lo, lo + k))
            lo += k
            m -= k
            complete = False
    # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}.
    proof = [] if complete else [_subtree_root(hashes, lo, hi)]
    proof.extend(reversed(appended))
    return proof


# --- Verifying proofs (RFC 9162 §2.1.3.2, §2.1.4.2) ----------------------------------------------


def _check_proof(proof: Sequence[bytes]) -> None:
    if len(proof) > _MAX_PROOF_LENGTH:
        raise ProofError("proof has too many nodes")
    for p in proof:
        _check_hash(p, "every proof node")


def _check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"{what} out of range")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(bytes(a), bytes(b))


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that leaf hash `leaf` is entry `index` of the tree of `tree_size` with head `root`.

    Implements RFC 9162 §2.1.3.2. `leaf` is a leaf hash (`leaf_hash(entry)`), not the entry.
    Returns None on success; raises ProofError on any failure (index >= tree_size, too few or too
    many proof nodes, a malformed hash, or a computed root different from `root`).
    """
    _check_size(tree_size, "tree size")
    if not 0 <= index < tree_size:
        raise ProofError("leaf index out of range")  # step 1
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    _check_proof(proof)

    fn, sn = index, tree_size - 1  # step 2
    r = bytes(leaf)  # step 3
    for p in proof:  # step 4
        if sn == 0:
            raise ProofError("inclusion proof has too many nodes")  # 4a
        if fn & 1 or fn == sn:  # 4b
            r = node_hash(p, r)
            while fn and not fn & 1:  # only when fn == sn: climb to the next left turn
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # step 5
        raise ProofError("inclusion proof has too few nodes")
    if not _equal(r, root):
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify that the tree of `old_size` (head `old_root`) is a prefix of the one of `new_size`.

    Implements RFC 9162 §2.1.4.2 for 0 < old_size < new_size. The cases the RFC leaves to the
    caller are decided strictly: equal sizes need equal roots and an empty proof; the empty old
    tree needs `old_root == EMPTY_ROOT` and an empty proof (it is a prefix of every tree, so the
    proof cannot say anything about `new_root`). Returns None on success; raises ProofError on any
    failure (new_size < old_size, extra or missing proof nodes, a malformed hash, a root mismatch).
    """
    _check_size(old_size, "old tree size")
    _check_size(new_size, "new tree size")
    if old_size > new_size:
        raise ProofError("new tree is smaller than the old tree")
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    _check_proof(proof)

    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal tree sizes must be empty")
        if not _equal(old_root, new_root):
            raise ProofError("equal tree sizes with different root hashes")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        if not _equal(old_root, EMPTY_ROOT):
            raise ProofError("old root hash is not the empty tree's hash")
        return

    if not proof:
        raise ProofError("consistency proof is empty")  # step 1
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))  # step 2
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("consistency proof has too many nodes")  # 6a
        if fn & 1 or fn == sn:  # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:  # only when fn == sn: climb to the next left turn
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    if sn != 0:  # step 7
        raise ProofError("consistency proof has too few nodes")
    old_ok = _equal(fr, old_root)
    new_ok = _equal(sr, new_root)
    if not (old_ok and new_ok):
        raise ProofError("consistency proof does not lead to the root hashes")


# --- Many proofs over one tree ------------------------------------------------------------------


class MerkleTree:
    """A fixed list of leaf hashes with every level kept: O(n) to build, O(log n) per proof.

    For callers that need the inclusion proof of many leaves of one tree (an export proving every
    entry), where calling `inclusion_proof` per leaf would cost O(n) each. levels[l][j] is
    MTH(D[j * 2**l : min((j + 1) * 2**l, n)]); the last node of a level may cover fewer leaves,
    which is exactly the right-hand subtree of RFC 9162 §2.1.1's split.
    """

    __slots__ = ("_levels",)

    def __init__(self, hashes: Sequence[bytes]) -> None:
        _check_leaf_hashes(hashes)
        level = [bytes(h) for h in hashes]
        self._levels = [level]
        while len(level) > 1:
            paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
            self._levels.append(level)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def root(self) -> bytes:
        """MTH(D[n]) (RFC 9162 §2.1.1); `EMPTY_ROOT` for no leaves."""
        return self._levels[-1][0] if self._levels[0] else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(index, D[n]) (RFC 9162 §2.1.3.1), equal to `inclusion_proof(hashes, index)`."""
        if not 0 <= index < self.size:
            raise ProofError("leaf index out of range")
        proof: list[bytes] = []
        for depth, level in enumerate(self._levels[:-1]):
            sibling = (index >> depth) ^ 1
            if sibling < len(level):  # else this node is carried up unchanged: no proof node
                proof.append(level[sibling])
        return proof


# --- Incremental root ----------------------------------------------------------------------------


class MerkleAccumulator:
    """An append-only tree that keeps only the roots of its perfect subtrees (a compact range).

    `append` is amortised O(1) node hashes and `root` is O(log n), so appending an audit entry
    never re-reads older leaves. The state (`size`, `peaks`) is small enough to persist beside
    the log and `restore` later; `root()` always equals `root_from_leaf_hashes` of the leaves
    appended so far (RFC 9162 §2.1.1).
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        self._size = 0
        # Roots of the perfect subtrees, largest (leftmost) first; one per set bit of _size.
        self._peaks: list[bytes] = []

    @classmethod
    def restore(cls, size: int, peaks: Sequence[bytes]) -> MerkleAccumulator:
        """Rebuild from a persisted `size` and `peaks`; ProofError if they are inconsistent."""
        _check_size(size, "tree size")
        if len(peaks) != size.bit_count():
            raise ProofError("number of peaks does not match the tree size")
        for p in peaks:
            _check_hash(p, "every peak")
        acc = cls()
        acc._size = size
        acc._peaks = [bytes(p) for p in peaks]
        return acc

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering the leaves, largest first."""
        return tuple(self._peaks)

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash (`leaf_hash(entry)`)."""
        _check_hash(leaf, "leaf hash")
        if self._size >= MAX_TREE_SIZE:
            raise ProofError("tree is full")
        h = bytes(leaf)
        n = self._size
        while n & 1:
            h = node_hash(self._peaks.pop(), h)
            n >>= 1
        self._peaks.append(h)
        self._size += 1

    def root(self) -> bytes:
        """MTH of the leaves appended so far (`EMPTY_ROOT` when there are none)."""
        if not self._peaks:
            return EMPTY_ROOT
        r = self._peaks[-1]
        for p in reversed(self._peaks[:-1]):
            r = node_hash(p, r)
        return r
