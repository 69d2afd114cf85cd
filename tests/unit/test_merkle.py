"""RFC 9162 Merkle tree: reference roots, proofs against a naive model, tampering, bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdx.errors import InvalidArgumentError, MalformedError, ProofError
from cdx.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    Accumulator,
    Frontier,
    InMemoryTree,
    SubtreeHashes,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    proof_subtrees,
    range_hash,
    root,
    root_ranges,
    subtree_coordinates,
    verify_consistency,
    verify_inclusion,
)

# --- an independent, literal transcription of RFC 9162 §2.1 -----------------------------------


def naive_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) exactly as written in RFC 9162 §2.1.1 (recursive, over raw entries)."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 §2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


# --- RFC 6962 reference tree (certificate-transparency / transparency-dev test data) ----------

CT_ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
CT_LEAVES = [leaf_hash(e) for e in CT_ENTRIES]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


CT_INCLUSION = [
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]
CT_CONSISTENCY = [
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def test_hashing_primitives_are_domain_separated() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(9))
def test_roots_match_rfc6962_reference_tree(size: int) -> None:
    assert naive_mth(CT_ENTRIES[:size]) == CT_ROOTS[size]
    assert root(CT_LEAVES[:size]) == CT_ROOTS[size]
    assert InMemoryTree(CT_LEAVES).root(size) == CT_ROOTS[size]
    assert Frontier().extend(CT_LEAVES[:size])[0].root() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    tree = InMemoryTree(CT_LEAVES)
    assert inclusion_proof(tree, index, size) == proof
    verify_inclusion(CT_LEAVES[index], index, size, proof, CT_ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY)
def test_reference_consistency_proofs(size1: int, size2: int, proof: list[bytes]) -> None:
    tree = InMemoryTree(CT_LEAVES)
    assert consistency_proof(tree, size1, size2) == proof
    verify_consistency(size1, size2, proof, CT_ROOTS[size1], CT_ROOTS[size2])


# --- property tests ----------------------------------------------------------------------------


def entries(n: int) -> list[bytes]:
    return [b"entry-%d" % i for i in range(n)]


class LeavesOnly:
    """A reader without ``subtree_hash``: proofs must fall back to hashing leaves."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._leaves = list(leaves)

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        return self._leaves[start:end]


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=140))
    return entries(size), draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    size2 = draw(st.integers(min_value=1, max_value=140))
    size1 = draw(st.integers(min_value=1, max_value=size2))
    return entries(size2), size1, size2


@settings(max_examples=300, deadline=None)
@given(tree_and_index())
def test_inclusion_proofs_match_the_rfc_and_verify(case: tuple[list[bytes], int]) -> None:
    data, index = case
    size = len(data)
    leaves = [leaf_hash(d) for d in data]
    proof = inclusion_proof(InMemoryTree(leaves), index, size)
    assert proof == naive_path(index, data)
    assert inclusion_proof(LeavesOnly(leaves), index, size) == proof
    verify_inclusion(leaves[index], index, size, proof, naive_mth(data))


@settings(max_examples=300, deadline=None)
@given(tree_and_sizes())
def test_consistency_proofs_match_the_rfc_and_verify(case: tuple[list[bytes], int, int]) -> None:
    data, size1, size2 = case
    leaves = [leaf_hash(d) for d in data]
    tree = InMemoryTree(leaves)
    proof = consistency_proof(tree, size1, size2)
    assert proof == (naive_subproof(size1, data, True) if size1 < size2 else [])
    assert consistency_proof(LeavesOnly(leaves), size1, size2) == proof
    verify_consistency(size1, size2, proof, naive_mth(data[:size1]), naive_mth(data))


def _inclusion_len(index: int, size: int) -> int:
    return len(naive_path(index, [b""] * size))


def _consistency_len(size1: int, size2: int) -> int:
    return len(naive_subproof(size1, [b""] * size2, True))


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % 32] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=300, deadline=None)
@given(tree_and_index(), st.data())
def test_tampered_inclusion_proofs_are_rejected(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    entries_, index = case
    size = len(entries_)
    leaves = [leaf_hash(d) for d in entries_]
    tree = InMemoryTree(leaves)
    proof, good_root = inclusion_proof(tree, index, size), tree.root()
    leaf = leaves[index]
    bit = data.draw(st.integers(0, 255))
    tampered: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (_flip(leaf, bit), index, size, proof, good_root),
        (leaf, index, size, proof, _flip(good_root, bit)),
        (leaf, index, size, [*proof, leaf], good_root),
        (leaf, index, size, [leaf, *proof], good_root),
    ]
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        tampered.append(
            (leaf, index, size, [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]], good_root)
        )
        tampered.append((leaf, index, size, proof[:i] + proof[i + 1 :], good_root))
    other_index = data.draw(st.integers(0, size))
    if other_index != index:
        tampered.append((leaf, other_index, size, proof, good_root))
    # A wrong size is only detectable from the proof's shape: the size is authenticated by the
    # signed checkpoint next to the root, not by the proof (RFC 9162 §2.1.3.2 binds neither).
    other_size = data.draw(st.integers(0, 2 * size + 2))
    if other_size <= index or len(proof) != _inclusion_len(index, other_size):
        tampered.append((leaf, index, other_size, proof, good_root))
    for args in tampered:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


@settings(max_examples=300, deadline=None)
@given(tree_and_sizes(), st.data())
def test_tampered_consistency_proofs_are_rejected(
    case: tuple[list[bytes], int, int], data: st.DataObject
) -> None:
    entries_, size1, size2 = case
    assume(size1 < size2)
    leaves = [leaf_hash(d) for d in entries_]
    tree = InMemoryTree(leaves)
    proof = consistency_proof(tree, size1, size2)
    r1, r2 = tree.root(size1), tree.root(size2)
    bit = data.draw(st.integers(0, 255))
    i = data.draw(st.integers(0, len(proof) - 1))
    tampered: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (size1, size2, proof, _flip(r1, bit), r2),
        (size1, size2, proof, r1, _flip(r2, bit)),
        (size1, size2, [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]], r1, r2),
        (size1, size2, proof[:i] + proof[i + 1 :], r1, r2),
        (size1, size2, [*proof, r1], r1, r2),
        (size1, size2, [r1, *proof], r1, r2),
        (size1, size2, proof, r2, r1),
    ]
    other1 = data.draw(st.integers(0, size2 + 1))
    if other1 != size1:
        tampered.append((other1, size2, proof, r1, r2))
    # As for inclusion, size2 is bound by the checkpoint; only a shape change is detectable.
    other2 = data.draw(st.integers(0, 2 * size2 + 2))
    if other2 <= size1 or len(proof) != _consistency_len(size1, other2):
        tampered.append((size1, other2, proof, r1, r2))
    for args in tampered:
        with pytest.raises(ProofError):
            verify_consistency(*args)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_frontier_root_equals_full_root_and_round_trips(size: int) -> None:
    leaves = [leaf_hash(d) for d in entries(size)]
    tree = InMemoryTree()
    frontier = Frontier()
    for h in leaves:
        expected_nodes = tree.append(h)
        frontier, nodes = frontier.append(h)
        assert nodes == expected_nodes
        for node in nodes:  # every completed node is what storage would serve
            width = 1 << node.level
            assert tree.subtree_hash(node.index * width, (node.index + 1) * width) == node.hash
    assert frontier.size == size
    assert frontier.root() == root(leaves) == tree.root() == naive_mth(entries(size))
    assert Frontier.from_bytes(frontier.to_bytes()) == frontier
    assert Frontier.from_reader(tree, size) == frontier
    assert Frontier.from_reader(LeavesOnly(leaves), size) == frontier


@settings(max_examples=100, deadline=None)
@given(start=st.integers(0, 150), added=st.integers(0, 150))
def test_accumulator_completes_the_nodes_a_node_table_stores(start: int, added: int) -> None:
    leaves = [leaf_hash(d) for d in entries(start + added)]
    base = Frontier().extend(leaves[:start])[0]
    expected, nodes = base.extend(leaves[start:])
    acc = Accumulator(base)
    created: list[tuple[int, int, bytes]] = []
    acc.extend(leaves[start:], created)
    assert acc.frontier() == expected and acc.size == start + added
    assert created == [(n.level, n.index, n.hash) for n in nodes if n.level >= 1]
    assert acc.root() == root(leaves) == naive_mth(entries(start + added))


@settings(max_examples=100, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_proof_ranges_name_exactly_the_hashes_of_the_proofs(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(d) for d in entries(size)]
    tree = InMemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1))
    size1 = data.draw(st.integers(0, size))
    for ranges, proof in (
        (inclusion_ranges(index, size), inclusion_proof(tree, index, size)),
        (consistency_ranges(size1, size), consistency_proof(tree, size1, size)),
    ):
        assert [root(leaves[a:b]) for a, b in ranges] == proof
        # The perfect subtrees a store reads are enough to rebuild every proof hash.
        fetched = {(a, b): tree.subtree_hash(a, b) for a, b in proof_subtrees(ranges)}
        reader = SubtreeHashes(fetched)
        assert [range_hash(reader.subtree_hash, a, b) for a, b in ranges] == proof
        for a, b in proof_subtrees(ranges):
            level, idx = subtree_coordinates(a, b)
            assert (idx << level, (idx + 1) << level) == (a, b)
    parts = root_ranges(size)
    assert Frontier.from_reader(SubtreeHashes({r: tree.subtree_hash(*r) for r in parts}), size)
    assert sum(b - a for a, b in parts) == size == (perfect_subtrees(0, size)[-1][1])


def test_a_subtree_missing_from_storage_is_an_internal_error() -> None:
    from cdx.errors import InternalError

    with pytest.raises(InternalError):
        inclusion_proof(SubtreeHashes({}), 1, 4)


@pytest.mark.parametrize("span", [(0, 3), (1, 3), (2, 6), (-2, 0), (4, 4), (6, 4)])
def test_ranges_that_are_not_perfect_subtrees_have_no_coordinates(span: tuple[int, int]) -> None:
    with pytest.raises(InvalidArgumentError):
        subtree_coordinates(*span)


def test_accumulator_refuses_malformed_leaf_hashes() -> None:
    acc = Accumulator()
    for bad in (b"", b"x" * 31, b"x" * 33, "x" * 32, 5):
        with pytest.raises(InvalidArgumentError):
            acc.add(bad)  # type: ignore[arg-type]
    assert acc.size == 0 and acc.root() == EMPTY_ROOT


def test_every_inclusion_and_consistency_proof_in_small_trees() -> None:
    """Exhaustive over sizes 1..33: every shape of the RFC recursion, including the edges."""
    for n in range(1, 34):
        data = entries(n)
        leaves = [leaf_hash(d) for d in data]
        tree = InMemoryTree(leaves)
        for m in range(n):
            verify_inclusion(leaves[m], m, n, inclusion_proof(tree, m, n), tree.root(n))
        for m in range(n + 1):
            verify_consistency(m, n, consistency_proof(tree, m, n), tree.root(m), tree.root(n))


# --- malformed input ---------------------------------------------------------------------------

H = leaf_hash(b"x")
R1 = root([H])
ONE_PROOF_ROOT = root([H, H])

BAD_INCLUSION = [
    ("negative index", (H, -1, 2, [H], ONE_PROOF_ROOT)),
    ("negative size", (H, 0, -1, [], R1)),
    ("index equals size", (H, 2, 2, [H], ONE_PROOF_ROOT)),
    ("index beyond size", (H, 5, 2, [H], ONE_PROOF_ROOT)),
    ("empty tree", (H, 0, 0, [], EMPTY_ROOT)),
    ("31-byte leaf hash", (H[:31], 0, 2, [H], ONE_PROOF_ROOT)),
    ("31-byte root", (H, 0, 2, [H], ONE_PROOF_ROOT[:31])),
    ("31-byte proof hash", (H, 0, 2, [H[:31]], ONE_PROOF_ROOT)),
    ("33-byte proof hash", (H, 0, 2, [H + b"\x00"], ONE_PROOF_ROOT)),
    ("absurdly long proof", (H, 0, 2, [H] * (MAX_PROOF_HASHES + 1), ONE_PROOF_ROOT)),
    ("size beyond uint64", (H, 0, 2**64, [H], ONE_PROOF_ROOT)),
    ("boolean index", (H, False, 2, [H], ONE_PROOF_ROOT)),
    ("proof hash not bytes", (H, 0, 2, ["00" * 32], ONE_PROOF_ROOT)),
]


@pytest.mark.parametrize(("name", "args"), BAD_INCLUSION, ids=[c[0] for c in BAD_INCLUSION])
def test_malformed_inclusion_input_is_rejected(name: str, args: tuple[object, ...]) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(*args)  # type: ignore[arg-type]


BAD_CONSISTENCY = [
    ("size1 greater than size2", (3, 2, [H], ONE_PROOF_ROOT, ONE_PROOF_ROOT)),
    ("negative size1", (-1, 2, [H], R1, ONE_PROOF_ROOT)),
    ("negative sizes equal", (-1, -1, [], R1, R1)),
    ("31-byte root1", (1, 2, [H], R1[:31], ONE_PROOF_ROOT)),
    ("31-byte root2", (1, 2, [H], R1, ONE_PROOF_ROOT[:31])),
    ("31-byte proof hash", (1, 2, [H[:31]], R1, ONE_PROOF_ROOT)),
    ("absurdly long proof", (1, 2, [H] * (MAX_PROOF_HASHES + 1), R1, ONE_PROOF_ROOT)),
    ("empty proof for growth", (1, 2, [], R1, ONE_PROOF_ROOT)),
    ("proof from the empty tree", (0, 2, [H], EMPTY_ROOT, ONE_PROOF_ROOT)),
    ("empty tree with a wrong root", (0, 2, [], H, ONE_PROOF_ROOT)),
    ("equal sizes with a proof", (2, 2, [H], ONE_PROOF_ROOT, ONE_PROOF_ROOT)),
    ("equal sizes, different roots", (2, 2, [], ONE_PROOF_ROOT, R1)),
    ("equal zero sizes, non-empty root", (0, 0, [], R1, R1)),
    ("size beyond uint64", (1, 2**64, [H], R1, ONE_PROOF_ROOT)),
]


@pytest.mark.parametrize(("name", "args"), BAD_CONSISTENCY, ids=[c[0] for c in BAD_CONSISTENCY])
def test_malformed_consistency_input_is_rejected(name: str, args: tuple[object, ...]) -> None:
    with pytest.raises(ProofError):
        verify_consistency(*args)  # type: ignore[arg-type]


class HugeProof(Sequence[bytes]):
    """A proof claiming a billion hashes; reading any of them is a denial-of-service bug."""

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, i: object) -> bytes:  # type: ignore[override]
        raise AssertionError("the verifier read a proof it should have rejected by length")


def test_absurdly_long_proofs_are_rejected_without_reading_them() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(H, 0, 2**63, HugeProof(), ONE_PROOF_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(1, 2**63, HugeProof(), R1, ONE_PROOF_ROOT)


def test_trivial_consistency_cases_are_accepted() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(2, 2, [], ONE_PROOF_ROOT, ONE_PROOF_ROOT)
    verify_consistency(0, 2, [], EMPTY_ROOT, ONE_PROOF_ROOT)


@pytest.mark.parametrize(
    ("index", "size"),
    [(-1, 3), (3, 3), (0, 0), (4, 3)],
    ids=["negative", "at-size", "empty", "beyond"],
)
def test_inclusion_proof_rejects_bad_requests(index: int, size: int) -> None:
    with pytest.raises(InvalidArgumentError):
        inclusion_proof(InMemoryTree(CT_LEAVES), index, size)


@pytest.mark.parametrize(("size1", "size2"), [(-1, 3), (4, 3), (0, -1)])
def test_consistency_proof_rejects_bad_requests(size1: int, size2: int) -> None:
    with pytest.raises(InvalidArgumentError):
        consistency_proof(InMemoryTree(CT_LEAVES), size1, size2)


def test_tree_rejects_bad_leaf_hashes_and_ranges() -> None:
    tree = InMemoryTree(CT_LEAVES)
    with pytest.raises(InvalidArgumentError):
        tree.append(b"short")
    with pytest.raises(InvalidArgumentError):
        root([b"short"])
    with pytest.raises(InvalidArgumentError):
        tree.subtree_hash(1, 3)  # not aligned
    with pytest.raises(InvalidArgumentError):
        tree.subtree_hash(0, 3)  # not a power of two
    with pytest.raises(InvalidArgumentError):
        tree.root(9)
    with pytest.raises(InvalidArgumentError):
        inclusion_proof(tree, 0, 9)  # storage does not hold that many leaves


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x00" * 7,
        (1).to_bytes(8, "big"),
        (1).to_bytes(8, "big") + b"\x00" * 31,
        (3).to_bytes(8, "big") + b"\x00" * 32,
        (0).to_bytes(8, "big") + b"\x00" * 32,
    ],
)
def test_malformed_frontier_state_is_rejected(blob: bytes) -> None:
    with pytest.raises(MalformedError):
        Frontier.from_bytes(blob)


def test_frontier_constructor_checks_hash_count() -> None:
    with pytest.raises(InvalidArgumentError):
        Frontier(3, (H,))
