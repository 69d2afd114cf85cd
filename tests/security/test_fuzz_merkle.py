"""Fuzzing Merkle proof verification (RFC 9162) with proofs an attacker controls: random
hashes, absurd lengths, negative, huge and non-integer indexes and sizes. Only ProofError
escapes, never in more than a bounded time, and a tampered valid proof never verifies."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cdx import merkle
from cdx.errors import MalformedError, ProofError

from .fuzzing import expect_error, fuzz_settings, mutated, outcome

TREE = merkle.InMemoryTree(merkle.leaf_hash(b"leaf %d" % i) for i in range(77))

_sizes = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(0, 100),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, -(2**64)]),
    st.sampled_from([True, False, 1.0, None, "3", b"\x01"]),
)
_hashes = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.just("x" * 32))
_proofs = st.one_of(
    st.lists(st.binary(min_size=32, max_size=32), max_size=70),
    st.lists(_hashes, max_size=8),
    st.integers(60, 70).map(lambda n: [b"\x00" * 32] * n),
)


@fuzz_settings()
@given(leaf=_hashes, index=_sizes, size=_sizes, proof=_proofs, root=_hashes)
def test_fuzz_verify_inclusion_random(leaf, index, size, proof, root) -> None:  # type: ignore[no-untyped-def]
    result = outcome(merkle.verify_inclusion, leaf, index, size, proof, root)
    if result is None:  # only a one-leaf tree (root == leaf hash) verifies without real data
        assert (index, size, proof, leaf) == (0, 1, [], root)
    else:
        assert isinstance(result, ProofError)


@fuzz_settings()
@given(size1=_sizes, size2=_sizes, proof=_proofs, root1=_hashes, root2=_hashes)
def test_fuzz_verify_consistency_random(size1, size2, proof, root1, root2) -> None:  # type: ignore[no-untyped-def]
    result = outcome(merkle.verify_consistency, size1, size2, proof, root1, root2)
    if result is None:  # only the trivial cases can verify without a real tree
        assert size1 == size2 and root1 == root2 and proof == []
    else:
        assert isinstance(result, ProofError)


@st.composite
def _tampered_inclusion(draw: st.DrawFn) -> tuple[int, int, list[bytes], list[bytes], bytes]:
    size = draw(st.integers(1, TREE.size))
    index = draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(TREE, index, size)
    # The size and root come together from a signed checkpoint; the index and the proof are what
    # a log server (or an attacker in its place) chooses. RFC 9162 binds a proof to (size, root)
    # only through the root: the same path shape serves e.g. leaf 0 of 3 and of 4 leaves.
    choice = draw(st.sampled_from(["hash", "drop", "add", "index", "reorder"]))
    bad = list(proof)
    bad_index, bad_size = index, size
    if choice == "hash" and bad:
        i = draw(st.integers(0, len(bad) - 1))
        bad[i] = draw(mutated(bad[i]).filter(lambda b: b != proof[i]))
    elif choice == "drop" and bad:
        del bad[draw(st.integers(0, len(bad) - 1))]
    elif choice == "add":
        bad.insert(draw(st.integers(0, len(bad))), draw(st.binary(min_size=32, max_size=32)))
    elif choice == "index":
        bad_index = draw(st.integers(-5, size + 5).filter(lambda i: i != index))
    elif choice == "reorder" and len(bad) > 1 and len(set(bad)) > 1:
        bad = draw(st.permutations(bad).filter(lambda p: p != proof))
    assume((bad, bad_index, bad_size) != (proof, index, size))
    return bad_index, bad_size, bad, proof, TREE.root(size)


@fuzz_settings()
@given(case=_tampered_inclusion())
def test_fuzz_tampered_inclusion_proof_never_verifies(case) -> None:  # type: ignore[no-untyped-def]
    index, size, bad, _, root = case
    leaf = TREE.leaf_hashes(index, index + 1)[0] if 0 <= index < TREE.size else b"\x00" * 32
    result = outcome(merkle.verify_inclusion, leaf, index, size, bad, root)
    if result is None:
        # The one legitimate way a changed (index, size, proof) still verifies: the same leaf
        # value at another position in a tree of identical root, which a hash collision needs.
        pytest.fail("a tampered inclusion proof verified")
    assert isinstance(result, ProofError)


@st.composite
def _tampered_consistency(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes, bytes]:
    size2 = draw(st.integers(2, TREE.size))
    size1 = draw(st.integers(1, size2 - 1))
    proof = merkle.consistency_proof(TREE, size1, size2)
    bad = list(proof)
    # As above, sizes travel with their roots in signed checkpoints; the proof is untrusted.
    choice = draw(st.sampled_from(["hash", "drop", "add", "swap", "root1"]))
    s1, s2, r1, r2 = size1, size2, TREE.root(size1), TREE.root(size2)
    if choice == "hash" and bad:
        i = draw(st.integers(0, len(bad) - 1))
        bad[i] = hashlib.sha256(bad[i]).digest()
    elif choice == "drop" and bad:
        del bad[draw(st.integers(0, len(bad) - 1))]
    elif choice == "add":
        bad.append(draw(st.binary(min_size=32, max_size=32)))
    elif choice == "root1":
        r1 = TREE.root(size1 - 1)
    elif choice == "swap" and len(bad) > 1:
        i = draw(st.integers(0, len(bad) - 2))
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
    assume((bad, s1, s2, r1) != (proof, size1, size2, TREE.root(size1)))
    return s1, s2, bad, r1, r2


@fuzz_settings()
@given(case=_tampered_consistency())
def test_fuzz_tampered_consistency_proof_never_verifies(case) -> None:  # type: ignore[no-untyped-def]
    s1, s2, bad, r1, r2 = case
    result = outcome(merkle.verify_consistency, s1, s2, bad, r1, r2)
    assert isinstance(result, ProofError), f"tampered consistency proof gave {result!r}"


@fuzz_settings()
@given(
    data=st.one_of(
        st.binary(max_size=200), mutated(merkle.Frontier.from_reader(TREE, 77).to_bytes())
    )
)
def test_fuzz_frontier_state_bytes(data: bytes) -> None:
    """The sequencer's stored frontier is read back from the database: never a bare error."""
    result = outcome(merkle.Frontier.from_bytes, data)
    if isinstance(result, Exception):
        assert isinstance(result, MalformedError)
    else:
        assert result.to_bytes() == data


@pytest.mark.parametrize("length", [65, 1000, 10**6])
def test_proof_of_absurd_length_is_refused_unread(length: int) -> None:
    proof = [b"\x00" * 32] * length
    expect_error(
        ProofError, merkle.verify_inclusion, b"\x00" * 32, 0, 2**64 - 1, proof, b"\x00" * 32
    )
    expect_error(
        ProofError, merkle.verify_consistency, 1, 2**64 - 1, proof, b"\x00" * 32, b"\x01" * 32
    )


@pytest.mark.parametrize("index", [-1, -(2**63), 2**64, 2**200])
def test_negative_or_huge_index_is_a_proof_error(index: int) -> None:
    proof = merkle.inclusion_proof(TREE, 3, 10)
    leaf = TREE.leaf_hashes(3, 4)[0]
    expect_error(ProofError, merkle.verify_inclusion, leaf, index, 10, proof, TREE.root(10))
    expect_error(ProofError, merkle.verify_inclusion, leaf, 3, index, proof, TREE.root(10))
