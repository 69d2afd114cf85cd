"""Unit tests for cdx.batchsig: one signature per batch, every item verifiable on its own."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import batchsig, crypto, errors, merkle
from cdx.v1 import exchange_pb2

ECDSA = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
ED25519 = crypto.KeySigner(crypto.generate_signing_key("ed25519"))


def _digests(n: int, tag: bytes = b"item") -> list[bytes]:
    return [hashlib.sha256(b"%s %d" % (tag, i)).digest() for i in range(n)]


@pytest.mark.parametrize("size", [1, 2, 3, 8, 32, 33, 128])
@pytest.mark.parametrize("signer", [ECDSA, ED25519], ids=["ecdsa", "ed25519"])
def test_every_item_verifies_alone_with_only_its_proof_and_the_key(
    size: int, signer: crypto.KeySigner
) -> None:
    digests = _digests(size)
    proofs = batchsig.sign_batch(digests, signer)
    assert len(proofs) == size
    for digest, proof in zip(digests, proofs):
        # A third party: one stored item digest, its stored proof bytes, the registered key.
        stored = batchsig.proof_from_bytes(proof.SerializeToString())
        batchsig.verify_batch_item(digest, stored, signer.public_key())
    assert {p.root_signature for p in proofs} == {proofs[0].root_signature}
    assert all(p.key_id == signer.key_id for p in proofs)


def test_the_byte_layout_is_the_documented_one() -> None:
    digests = _digests(3)
    proofs = batchsig.sign_batch(digests, ED25519)
    leaves = [merkle.leaf_hash(b"cdx/batch-item/v1\n" + d) for d in digests]
    root = merkle.root(leaves)
    assert proofs[1].root == root
    assert list(proofs[1].path) == merkle.inclusion_proof(merkle.InMemoryTree(leaves), 1, 3)
    signed = b"cdx/batch/v1\n" + struct.pack(">Q", 3) + root
    crypto.verify(ED25519.public_key(), proofs[1].root_signature, signed)  # Ed25519: deterministic
    assert proofs[1].root_signature == ED25519.sign(signed)


def test_a_single_item_is_a_batch_of_one() -> None:
    (digest,) = _digests(1)
    (proof,) = batchsig.sign_batch([digest], ECDSA)
    assert (proof.index, proof.size, list(proof.path)) == (0, 1, [])
    assert proof.root == batchsig.item_leaf(digest)
    batchsig.BatchVerifier().verify_batch([digest], [proof], ECDSA.public_key())


@pytest.mark.parametrize("count", [0, batchsig.MAX_BATCH_ITEMS + 1])
def test_signing_refuses_empty_and_oversized_batches(count: int) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.sign_batch([b"\x00" * 32] * count, ECDSA)


def test_signing_refuses_a_digest_that_is_not_32_bytes() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.sign_batch([b"\x00" * 31], ECDSA)


def test_the_algorithm_comes_from_the_registered_key_not_the_proof() -> None:
    digests = _digests(4)
    proofs = batchsig.sign_batch(digests, ED25519)
    with pytest.raises(errors.SignatureError):
        batchsig.verify_batch_item(digests[0], proofs[0], ECDSA.public_key())
    # The key id is only a hint: naming another key changes nothing about verification.
    proofs[0].key_id = ECDSA.key_id
    batchsig.verify_batch_item(digests[0], proofs[0], ED25519.public_key())


def test_verifier_checks_the_root_signature_once_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    real_verify = crypto.verify

    def counting(key: crypto.PublicKey, signature: bytes, data: bytes) -> None:
        calls.append(data)
        real_verify(key, signature, data)

    monkeypatch.setattr(batchsig.crypto, "verify", counting)
    verifier = batchsig.BatchVerifier()
    for batch in range(3):
        digests = _digests(32, b"batch %d" % batch)
        verifier.verify_batch(digests, batchsig.sign_batch(digests, ECDSA), ECDSA.public_key())
    assert len(calls) == 3
    assert len(verifier) == 3


def test_verified_root_cache_is_bounded_and_evicts_the_oldest() -> None:
    verifier = batchsig.BatchVerifier(max_entries=2)
    batches = []
    for batch in range(3):
        digests = _digests(2, b"bounded %d" % batch)
        batches.append((digests, batchsig.sign_batch(digests, ECDSA)))
        verifier.verify_batch(*batches[-1], ECDSA.public_key())
    assert len(verifier) == 2
    # An evicted root still verifies (the cache saves work; it never decides).
    verifier.verify_batch(*batches[0], ECDSA.public_key())
    assert len(verifier) == 2


def test_verifier_needs_room_for_one_root() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.BatchVerifier(max_entries=0)


def test_verify_batch_needs_one_digest_per_proof() -> None:
    digests = _digests(2)
    proofs = batchsig.sign_batch(digests, ECDSA)
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.BatchVerifier().verify_batch(digests[:1], proofs, ECDSA.public_key())


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_property_every_item_verifies_and_no_other_digest_does(
    size: int, data: st.DataObject
) -> None:
    digests = [data.draw(st.binary(min_size=32, max_size=32)) for _ in range(size)]
    proofs = batchsig.sign_batch(digests, ED25519)
    verifier = batchsig.BatchVerifier()
    verifier.verify_batch(digests, proofs, ED25519.public_key())
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.binary(min_size=32, max_size=32).filter(lambda d: d != digests[index]))
    with pytest.raises(errors.BatchProofError):
        verifier.verify_item(other, proofs[index], ED25519.public_key())


@settings(max_examples=40, deadline=None)
@given(size=st.integers(2, 40), data=st.data())
def test_property_any_reordering_of_a_batch_fails(size: int, data: st.DataObject) -> None:
    digests = _digests(size)
    proofs = batchsig.sign_batch(digests, ED25519)
    order = data.draw(st.permutations(range(size)).filter(lambda p: list(p) != list(range(size))))
    with pytest.raises(errors.BatchProofError):
        batchsig.BatchVerifier().verify_batch(
            [digests[i] for i in order], [proofs[i] for i in order], ED25519.public_key()
        )


@settings(max_examples=40, deadline=None)
@given(size=st.integers(2, 40), data=st.data())
def test_property_an_item_under_another_items_proof_fails(size: int, data: st.DataObject) -> None:
    digests = _digests(size)
    proofs = batchsig.sign_batch(digests, ED25519)
    a = data.draw(st.integers(0, size - 1))
    b = data.draw(st.integers(0, size - 1).filter(lambda i: i != a))
    with pytest.raises(errors.BatchProofError):
        batchsig.verify_batch_item(digests[a], proofs[b], ED25519.public_key())


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 40), data=st.data())
def test_property_any_sub_or_super_batch_fails_the_layout(size: int, data: st.DataObject) -> None:
    proofs = batchsig.sign_batch(_digests(size), ED25519)
    kept = data.draw(
        st.lists(st.integers(0, size - 1), min_size=1, max_size=size + 3).filter(
            lambda picks: picks != list(range(size))
        )
    )
    with pytest.raises(errors.BatchProofError):
        batchsig.check_batch_layout([proofs[i] for i in kept])


def _proof(**changes: object) -> exchange_pb2.BatchProof:
    (proof,) = batchsig.sign_batch(_digests(1), ECDSA)
    for name, value in changes.items():
        if name == "path":
            del proof.path[:]
            proof.path.extend(value)  # type: ignore[arg-type]
        else:
            setattr(proof, name, value)
    return proof


def test_item_leaf_refuses_a_digest_that_is_not_32_bytes() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.item_leaf(b"short")
    with pytest.raises(errors.InvalidArgumentError):
        batchsig.verify_batch_item(b"short", _proof(), ECDSA.public_key())
