"""audit.merkle: RFC 6962 / RFC 9162 Merkle trees against published vectors and generated trees.

Vectors (tests/vectors/rfc6962/*.json) are copied from transparency-dev/merkle and
google/certificate-transparency; each file names its source repository, path and commit.

The property tests compare the iterative implementation with a literal, recursive transcription
of the RFC 9162 §2.1 definitions (MTH, PATH, SUBPROOF) kept in this file, and check that every
tampering is rejected. Changing the tree size is the one subtle case: the §2.1.3.2 / §2.1.4.2
algorithms authenticate a proof's *shape* (which side each node joins on), and some different
(index, size) pairs share a shape — e.g. leaf 0 in trees of 3 and 4 leaves. Such a proof is
accepted for either size by every RFC verifier; the tree size itself is authenticated by the
signed tree head, not by the proof. The tests therefore derive, from the RFC definitions, exactly
when a changed size must be rejected, and check the verifier rejects it then and only then.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bastionpay.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    MerkleAccumulator,
    MerkleTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "rfc6962"
MAX_N = 70


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def _hx(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


CONSTANTS = _load("tdm-testonly-constants.json")
VERIFY_TEST = _load("tdm-proof-verify-test.json")
HASHER = _load("tdm-rfc6962-hasher.json")
PROBES = _load("tdm-testdata-probes.json")
CT = _load("ct-python-merkle-test.json")

TEST_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in CONSTANTS["leaf_inputs"]]


# --- Reference: RFC 9162 §2.1 transcribed literally (recursive, fine for small n) --------------


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """PATH(m, D[lo:hi]) as the leaf ranges of its nodes."""
    n = hi - lo
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, lo, lo + k), (lo + k, hi)]
    return [*ref_path(m - k, lo + k, hi), (lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[tuple[int, int]]:
    """SUBPROOF(m, D[lo:hi], b) as the leaf ranges of its nodes."""
    n = hi - lo
    if m == n:
        return [] if b else [(lo, hi)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, b), (lo + k, hi)]
    return [*ref_subproof(m - k, lo + k, hi, False), (lo, lo + k)]


def _shape(lo: int, hi: int, labels: dict[tuple[int, int], object]) -> object:
    """The tree over D[lo:hi] with labelled subtrees collapsed: what a verifier recomputes."""
    if (lo, hi) in labels:
        return labels[(lo, hi)]
    if hi - lo < 2:
        raise AssertionError(f"unlabelled leaf {lo}")
    k = _k(hi - lo)
    return (_shape(lo, lo + k, labels), _shape(lo + k, hi, labels))


def inclusion_shape(index: int, size: int) -> object:
    labels: dict[tuple[int, int], object] = {(index, index + 1): "leaf"}
    labels.update({r: i for i, r in enumerate(ref_path(index, 0, size))})
    return _shape(0, size, labels)


def consistency_shape(old: int, new: int) -> object:
    """(old-tree expression, new-tree expression) over the proof of 0 < old < new."""
    labels: dict[tuple[int, int], object] = {}
    if old & (old - 1) == 0:
        labels[(0, old)] = "old_root"
    labels.update({r: i for i, r in enumerate(ref_subproof(old, 0, new, True))})
    return (_shape(0, old, labels), _shape(0, new, labels))


def _tree(n: int, seed: int = 6962) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


TREE = _tree(MAX_N * 2 + 2)
ROOTS = [ref_mth(TREE[:n]) for n in range(len(TREE) + 1)]


def _flip(value: bytes, bit: int) -> bytes:
    b = bytearray(value)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _one_bit_flips(value: bytes, rng: random.Random) -> Iterator[bytes]:
    """Flips of the first and last bit and one random bit in between."""
    for bit in {0, len(value) * 8 - 1, rng.randrange(len(value) * 8)}:
        yield _flip(value, bit)


def _rejects(verify: Callable[..., None], *args: Any) -> None:
    """Assert that `verify(*args)` raises ProofError (a cheap pytest.raises for hot loops)."""
    try:
        verify(*args)
    except ProofError:
        return
    raise AssertionError(f"{verify.__name__} accepted {args!r}")


@functools.cache
def ref_range(lo: int, hi: int) -> bytes:
    """MTH(TREE[lo:hi]), memoised."""
    return ref_mth(TREE[lo:hi])


# --- Vector files ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.name)
def test_every_vector_file_names_its_public_source(path: Path) -> None:
    source = json.loads(path.read_text(encoding="utf-8"))["source"]
    assert source["repository"].startswith("https://github.com/")
    assert source["path"]
    assert source["commit"]


def test_probe_hashes_are_upstream_nodes_or_their_documented_corruptions() -> None:
    # Guards the hand-copied negative probes: a typo would make a negative test pass vacuously.
    known = {bytes.fromhex(h) for level in CONSTANTS["node_hashes"] for h in level}
    known |= set(_hx(CONSTANTS["root_hashes"]))
    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    known.add(some_hash)  # sha256SomeHash of proof/verify_test.go
    garbage = {b"", b"WrongLeaf", b"WrongRoot"}
    for kind, fields in (("inclusion", ("root", "leafHash")), ("consistency", ("root1", "root2"))):
        for entry in PROBES[kind]:
            probe = entry["probe"]
            values = [base64.b64decode(probe[f]) for f in fields]
            values += [base64.b64decode(p) for p in probe["proof"] or []]
            for v in values:
                if v in known or v in garbage:
                    continue
                flipped = {_flip(v, bit) for bit in (3, 4)}  # "bit 3" / "bit 4" of byte 0
                assert flipped & known, (entry["path"], v.hex())


# --- Hashing -----------------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == HASHER["empty_root"] == CT["empty_hash"]
    assert EMPTY_ROOT.hex() == CONSTANTS["root_hashes"][0]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MerkleAccumulator().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_match_transparency_dev() -> None:
    for case in HASHER["leaf_hashes"]:
        assert leaf_hash(case["input_ascii"].encode()).hex() == case["want"], case["desc"]
    for case in HASHER["node_hashes"]:
        got = node_hash(case["left_ascii"].encode(), case["right_ascii"].encode())
        assert got.hex() == case["want"], case["desc"]


def test_leaf_and_node_hashes_match_certificate_transparency() -> None:
    for case in CT["leaf_hashes"]:
        assert leaf_hash(bytes.fromhex(case["input"])).hex() == case["want"]
    for case in CT["node_hashes"]:
        got = node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"]))
        assert got.hex() == case["want"]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert a != b
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) != node_hash(b, a)


# --- Roots -------------------------------------------------------------------------------------


def test_roots_of_every_prefix_match_testonly_constants() -> None:
    for n, want in enumerate(CONSTANTS["root_hashes"]):
        assert root_from_leaf_hashes(TEST_LEAVES[:n]).hex() == want, n


def test_roots_match_the_other_published_copies() -> None:
    for i, want in enumerate(VERIFY_TEST["roots"]):
        leaves = [leaf_hash(bytes.fromhex(x)) for x in VERIFY_TEST["leaves"][: i + 1]]
        assert root_from_leaf_hashes(leaves).hex() == want
    ct_leaves = [leaf_hash(bytes.fromhex(x)) for x in CT["test_vector_leaves"]]
    for i, want in enumerate(CT["test_vector_hashes_by_size_from_1"]):
        assert root_from_leaf_hashes(ct_leaves[: i + 1]).hex() == want


def test_every_perfect_subtree_matches_node_hashes() -> None:
    for level, hashes in enumerate(CONSTANTS["node_hashes"]):
        width = 1 << level
        for i, want in enumerate(hashes):
            got = root_from_leaf_hashes(TEST_LEAVES[i * width : (i + 1) * width])
            assert got.hex() == want, (level, i)


def test_root_matches_the_recursive_definition_for_every_size() -> None:
    for n in range(len(TREE) + 1):
        assert root_from_leaf_hashes(TREE[:n]) == ROOTS[n], n


def test_large_tree_root_needs_no_deep_recursion() -> None:
    n = (1 << 16) + 3
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    acc = MerkleAccumulator()
    for h in leaves:
        acc.append(h)
    root = root_from_leaf_hashes(leaves)
    assert acc.root() == root
    tree = MerkleTree(leaves)
    assert tree.root() == root
    for index in (0, n // 2, n - 1):
        proof = inclusion_proof(leaves, index)
        assert tree.inclusion_proof(index) == proof
        verify_inclusion(leaves[index], index, n, proof, root)
    old = n - 5
    proof = consistency_proof(leaves, old)
    verify_consistency(old, n, root_from_leaf_hashes(leaves[:old]), root, proof)


# --- Accumulator -------------------------------------------------------------------------------


def test_accumulator_matches_published_roots() -> None:
    acc = MerkleAccumulator()
    for n, leaf in enumerate(TEST_LEAVES, start=1):
        acc.append(leaf)
        assert acc.size == n
        assert acc.root().hex() == CONSTANTS["root_hashes"][n]


def test_accumulator_matches_root_from_leaf_hashes_and_restores() -> None:
    acc = MerkleAccumulator()
    for n in range(1, len(TREE) + 1):
        acc.append(TREE[n - 1])
        assert acc.root() == root_from_leaf_hashes(TREE[:n]) == ROOTS[n]
        assert len(acc.peaks) == n.bit_count()
        restored = MerkleAccumulator.restore(acc.size, acc.peaks)
        assert restored.root() == acc.root()
    restored.append(TREE[0])
    assert restored.root() == ref_mth([*TREE, TREE[0]])


def test_accumulator_rejects_bad_input() -> None:
    acc = MerkleAccumulator()
    with pytest.raises(ProofError):
        acc.append(b"short")
    with pytest.raises(ProofError):
        MerkleAccumulator.restore(3, [TREE[0]])  # size 3 needs two peaks
    with pytest.raises(ProofError):
        MerkleAccumulator.restore(-1, [])
    with pytest.raises(ProofError):
        MerkleAccumulator.restore(1, [b"x" * 31])
    assert acc.size == 0


# --- MerkleTree (many proofs over one tree) ----------------------------------------------------


def test_merkle_tree_matches_published_vectors() -> None:
    for n, want in enumerate(CONSTANTS["root_hashes"]):
        assert MerkleTree(TEST_LEAVES[:n]).root().hex() == want
    for case in VERIFY_TEST["inclusion_proofs"]:
        tree = MerkleTree(TEST_LEAVES[: case["tree_size"]])
        assert tree.inclusion_proof(case["leaf_index"]) == _hx(case["proof"])


def test_merkle_tree_proofs_equal_inclusion_proof_for_every_leaf() -> None:
    for n in range(len(TREE) + 1):
        tree = MerkleTree(TREE[:n])
        assert tree.size == n
        assert tree.root() == ROOTS[n]
        for i in range(n):
            assert tree.inclusion_proof(i) == [ref_range(a, b) for a, b in ref_path(i, 0, n)]
        for bad in (-1, n):
            with pytest.raises(ProofError):
                tree.inclusion_proof(bad)
    with pytest.raises(ProofError):
        MerkleTree([TREE[0], b"short"])


# --- Published inclusion and consistency proofs -----------------------------------------------


@pytest.mark.parametrize(
    "case",
    VERIFY_TEST["inclusion_proofs"],
    ids=lambda c: f"leaf{c['leaf_index']}-of-{c['tree_size']}",
)
def test_inclusion_proofs_from_proof_verify_test(case: dict[str, Any]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    leaves = [leaf_hash(bytes.fromhex(x)) for x in VERIFY_TEST["leaves"][:size]]
    root = bytes.fromhex(VERIFY_TEST["roots"][size - 1])
    want = _hx(case["proof"])
    assert inclusion_proof(leaves, index) == want
    verify_inclusion(leaves[index], index, size, want, root)


@pytest.mark.parametrize(
    "case",
    VERIFY_TEST["consistency_proofs"],
    ids=lambda c: f"{c['old_size']}-to-{c['new_size']}",
)
def test_consistency_proofs_from_proof_verify_test(case: dict[str, Any]) -> None:
    old, new = case["old_size"], case["new_size"]
    leaves = [leaf_hash(bytes.fromhex(x)) for x in VERIFY_TEST["leaves"][:new]]
    roots = VERIFY_TEST["roots"]
    want = _hx(case["proof"])
    assert consistency_proof(leaves, old) == want
    verify_consistency(old, new, bytes.fromhex(roots[old - 1]), bytes.fromhex(roots[new - 1]), want)


@pytest.mark.parametrize(
    "case", CT["consistency_proofs"], ids=lambda c: f"{c['old_size']}-to-{c['new_size']}"
)
def test_consistency_proofs_from_certificate_transparency(case: dict[str, Any]) -> None:
    old, new = case["old_size"], case["new_size"]
    leaves = [leaf_hash(bytes.fromhex(x)) for x in CT["test_vector_leaves"][:new]]
    want = _hx(case["proof"])
    old_root, new_root = bytes.fromhex(case["old_root"]), bytes.fromhex(case["new_root"])
    assert consistency_proof(leaves, old) == want
    assert root_from_leaf_hashes(leaves[:old]) == old_root
    assert root_from_leaf_hashes(leaves) == new_root
    verify_consistency(old, new, old_root, new_root, want)


@pytest.mark.parametrize("case", CT["consistency_failures"], ids=lambda c: c["desc"])
def test_consistency_failures_from_certificate_transparency(case: dict[str, Any]) -> None:
    with pytest.raises(ProofError):
        verify_consistency(
            case["old_size"],
            case["new_size"],
            bytes.fromhex(case["old_root"]),
            bytes.fromhex(case["new_root"]),
            _hx(case["proof"]),
        )


def test_real_certificate_transparency_log_inclusion_proof() -> None:
    case = CT["real_log_inclusion"]
    raw_leaf = bytes.fromhex("".join(case["raw_leaf_hex_chunks"]))
    leaf = leaf_hash(raw_leaf)
    assert leaf.hex() == case["leaf_hash"]
    index, size = case["leaf_index"], case["tree_size"]
    path, root = _hx(case["audit_path"]), bytes.fromhex(case["root"])
    verify_inclusion(leaf, index, size, path, root)

    rng = random.Random(848049)
    for i, node in enumerate(path):
        for bad in _one_bit_flips(node, rng):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, [*path[:i], bad, *path[i + 1 :]], root)
    for bad_root in _one_bit_flips(root, rng):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, path, bad_root)
    for bad_index in (index - 1, index + 1, index ^ 2, index + (1 << (len(path) + 1))):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, bad_index, size, path, root)
    for bad_path in (path[:-1], [*path, path[-1]], path[1:], [root, *path]):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, bad_path, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size * 2, path, root)


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


@pytest.mark.parametrize(
    "entry", PROBES["inclusion"], ids=lambda e: e["path"].removeprefix("testdata/inclusion/")
)
def test_inclusion_probes_from_transparency_dev_testdata(entry: dict[str, Any]) -> None:
    p = entry["probe"]
    proof = [_b64(x) for x in p["proof"] or []]
    args = (_b64(p["leafHash"]), p["leafIdx"], p["treeSize"], proof, _b64(p["root"]))
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)
        assert inclusion_proof(TEST_LEAVES[: p["treeSize"]], p["leafIdx"]) == proof


@pytest.mark.parametrize(
    "entry", PROBES["consistency"], ids=lambda e: e["path"].removeprefix("testdata/consistency/")
)
def test_consistency_probes_from_transparency_dev_testdata(entry: dict[str, Any]) -> None:
    p = entry["probe"]
    proof = [_b64(x) for x in p["proof"] or []]
    args = (p["size1"], p["size2"], _b64(p["root1"]), _b64(p["root2"]), proof)
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
        assert consistency_proof(TEST_LEAVES[: p["size2"]], p["size1"]) == proof


# --- Generated trees: every size 1..70, every index, every old size ---------------------------


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_inclusion_proofs_of_every_leaf(n: int) -> None:
    leaves, root = TREE[:n], ROOTS[n]
    rng = random.Random(n)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof == [ref_range(a, b) for a, b in ref_path(i, 0, n)]
        verify_inclusion(leaves[i], i, n, proof, root)

        for j, node in enumerate(proof):
            for bad in _one_bit_flips(node, rng):
                _rejects(
                    verify_inclusion, leaves[i], i, n, [*proof[:j], bad, *proof[j + 1 :]], root
                )
        for bad in _one_bit_flips(root, rng):
            _rejects(verify_inclusion, leaves[i], i, n, proof, bad)
        for bad in _one_bit_flips(leaves[i], rng):
            _rejects(verify_inclusion, bad, i, n, proof, root)

        # Extra or missing nodes.
        tampered = [[*proof, root], [root, *proof], [*proof, proof[-1]] if proof else [root]]
        if proof:
            tampered += [proof[:-1], proof[1:]]
        for bad_proof in tampered:
            _rejects(verify_inclusion, leaves[i], i, n, bad_proof, root)

        # Another index of the same tree: distinct leaves have distinct paths, so all must fail.
        # Every index up to 32 leaves, a sample beyond (keeps the suite fast).
        others = range(n) if n <= 32 else {i - 1, i + 1, i ^ 1, i ^ 2, i ^ 4, 0, n - 1}
        for other in {*others, rng.randrange(n), -1, n, n + 1}:
            if other != i:
                _rejects(verify_inclusion, leaves[i], other, n, proof, root)

        # Other sizes: rejected exactly when the RFC path shape differs (see module docstring).
        shape = inclusion_shape(i, n)
        for size in {0, n - 1, n + 1, n * 2, n // 2, n + rng.randrange(1, 64)} - {n}:
            if 0 <= i < size and inclusion_shape(i, size) == shape:
                verify_inclusion(leaves[i], i, size, proof, root)
            else:
                _rejects(verify_inclusion, leaves[i], i, size, proof, root)


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_consistency_proofs_from_every_old_size(n: int) -> None:
    leaves, new_root = TREE[:n], ROOTS[n]
    rng = random.Random(-n)
    for m in range(n + 1):
        old_root = ROOTS[m]
        proof = consistency_proof(leaves, m)
        if 0 < m < n:
            assert proof == [ref_range(a, b) for a, b in ref_subproof(m, 0, n, True)]
        else:
            assert proof == []
        verify_consistency(m, n, old_root, new_root, proof)

        for j, node in enumerate(proof):
            for bad in _one_bit_flips(node, rng):
                _rejects(
                    verify_consistency, m, n, old_root, new_root, [*proof[:j], bad, *proof[j + 1 :]]
                )
        for bad in _one_bit_flips(old_root, rng):
            _rejects(verify_consistency, m, n, bad, new_root, proof)
        if m > 0:  # The empty tree is a prefix of every tree: nothing binds new_root then.
            for bad in _one_bit_flips(new_root, rng):
                _rejects(verify_consistency, m, n, old_root, bad, proof)
        if m != n:
            _rejects(verify_consistency, m, n, new_root, old_root, proof)  # swapped roots

        tampered = [[*proof, new_root], [old_root, *proof], [*proof, old_root]]
        if proof:
            tampered += [[], proof[:-1], proof[1:], [proof[0], *proof]]
        for bad_proof in tampered:
            _rejects(verify_consistency, m, n, old_root, new_root, bad_proof)

        _rejects(verify_consistency, n + 1, n, old_root, new_root, proof)  # new tree smaller
        _rejects(verify_consistency, -1, n, old_root, new_root, proof)

        _check_changed_sizes(m, n, old_root, new_root, proof, rng)


def _check_changed_sizes(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes], rng: random.Random
) -> None:
    """Changed sizes are rejected exactly when the RFC proof shape differs (module docstring)."""
    shape = consistency_shape(m, n) if 0 < m < n else None
    olds = {m - 1, m + 1, m ^ 1, m ^ 2, m * 2, m // 2, rng.randrange(n + 1)} - {m}
    pairs = [(old, n) for old in olds]
    pairs += [(m, new) for new in {n - 1, n + 1, n * 2, n // 2, n + rng.randrange(1, 64)} - {n}]
    for old, new in pairs:
        if m == old == 0 and new > 0:
            # From the empty tree to a non-empty one, only old_root and the empty proof are checked.
            verify_consistency(old, new, old_root, new_root, proof)
        elif shape is not None and 0 < old < new and consistency_shape(old, new) == shape:
            verify_consistency(old, new, old_root, new_root, proof)
        else:
            _rejects(verify_consistency, old, new, old_root, new_root, proof)


def test_every_bit_of_every_node_is_checked() -> None:
    leaves = TREE[:7]
    root = ROOTS[7]
    for i in range(7):
        proof = inclusion_proof(leaves, i)
        for j, node in enumerate(proof):
            for bit in range(HASH_SIZE * 8):
                bad = [*proof[:j], _flip(node, bit), *proof[j + 1 :]]
                _rejects(verify_inclusion, leaves[i], i, 7, bad, root)
    for m in range(1, 7):
        proof = consistency_proof(leaves, m)
        for j, node in enumerate(proof):
            for bit in range(HASH_SIZE * 8):
                bad = [*proof[:j], _flip(node, bit), *proof[j + 1 :]]
                _rejects(verify_consistency, m, 7, ROOTS[m], root, bad)
        for bit in range(HASH_SIZE * 8):
            _rejects(verify_consistency, m, 7, _flip(ROOTS[m], bit), root, proof)
            _rejects(verify_consistency, m, 7, ROOTS[m], _flip(root, bit), proof)


def test_shape_oracle_sees_the_known_ambiguities() -> None:
    # Leaf 0 of 3 and of 4 leaves share a path shape (both turn left twice): an RFC 9162 verifier
    # accepts the same proof for either size. The signed tree head is what authenticates the size.
    assert inclusion_shape(0, 3) == inclusion_shape(0, 4)
    proof = inclusion_proof(TREE[:3], 0)
    verify_inclusion(TREE[0], 0, 4, proof, ROOTS[3])
    assert consistency_shape(1, 3) == consistency_shape(1, 4)
    # ... while the size changes used by the upstream tests always change it here.
    assert inclusion_shape(0, 8) != inclusion_shape(0, 16)
    assert consistency_shape(6, 8) != consistency_shape(6, 16)


# --- Parameter bounds --------------------------------------------------------------------------


def test_generation_rejects_out_of_range_parameters() -> None:
    leaves = TREE[:5]
    for index in (-1, 5, 6):
        with pytest.raises(ProofError):
            inclusion_proof(leaves, index)
    with pytest.raises(ProofError):
        inclusion_proof([], 0)
    for old in (-1, 6):
        with pytest.raises(ProofError):
            consistency_proof(leaves, old)
    for bad_leaves in ([b""], [TREE[0], b"x" * 33], [TREE[0][:31]]):
        with pytest.raises(ProofError):
            root_from_leaf_hashes(bad_leaves)
        with pytest.raises(ProofError):
            inclusion_proof(bad_leaves, 0)
        with pytest.raises(ProofError):
            consistency_proof(bad_leaves, 1)


def test_verification_rejects_out_of_range_parameters() -> None:
    leaf, root = TREE[0], ROOTS[1]
    for index, size in ((0, 0), (1, 1), (-1, 1), (0, -1), (0, MAX_TREE_SIZE + 1), (2, 1)):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, [], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 1, [], root[:31])
    with pytest.raises(ProofError):
        verify_inclusion(leaf + b"\x00", 0, 1, [], root)
    with pytest.raises(ProofError):  # more nodes than any tree of 2**64 - 1 leaves needs
        verify_inclusion(leaf, 0, MAX_TREE_SIZE, [root] * 65, root)

    for old, new in ((1, 0), (-1, 1), (0, MAX_TREE_SIZE + 1), (MAX_TREE_SIZE + 1, MAX_TREE_SIZE)):
        with pytest.raises(ProofError):
            verify_consistency(old, new, root, root, [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    with pytest.raises(ProofError):  # the empty tree has exactly one root hash
        verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[5]])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[3][:16], [])
    with pytest.raises(ProofError):
        verify_consistency(1, MAX_TREE_SIZE, root, root, [root] * 65)


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)
