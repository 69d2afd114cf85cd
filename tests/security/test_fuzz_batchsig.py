"""Fuzzing batch-signature proofs (cdx.batchsig) as an attacker controls them: random and
mutated proofs, random bytes for a stored proof, absurd indexes and sizes. Only the domain
errors escape (``batch_proof_invalid`` for any malformed or non-covering proof,
``invalid_signature`` for a well-formed proof whose root signature fails), and a changed proof
never verifies."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import batchsig, crypto
from cdx.errors import BatchProofError, SignatureError
from cdx.v1 import exchange_pb2

from .fuzzing import expect_error, fuzz_settings, mutated, outcome, protobuf_messages

SIGNER = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
KEY = SIGNER.public_key()
DIGESTS = [hashlib.sha256(b"fuzz item %d" % i).digest() for i in range(13)]
PROOFS = batchsig.sign_batch(DIGESTS, SIGNER)
VALID = PROOFS[5]
VALID_BYTES = VALID.SerializeToString()


def _changed(**changes: object) -> exchange_pb2.BatchProof:
    proof = exchange_pb2.BatchProof()
    proof.CopyFrom(VALID)
    for name, value in changes.items():
        if name == "path":
            del proof.path[:]
            proof.path.extend(value)  # type: ignore[arg-type]
        else:
            setattr(proof, name, value)
    return proof


PATH = list(VALID.path)
#: Malformed or non-covering proofs of DIGESTS[5]: each is exactly ``batch_proof_invalid``.
MALFORMED = {
    "size_zero": _changed(size=0),
    "size_over_the_limit": _changed(size=batchsig.MAX_BATCH_ITEMS + 1),
    "size_huge": _changed(size=2**64 - 1),
    "index_equal_to_size": _changed(index=13),
    "index_huge": _changed(index=2**64 - 1),
    "another_index": _changed(index=4),
    "another_size_and_path_shape": _changed(size=5),
    "path_too_long_for_any_batch": _changed(path=[b"\x00" * 32] * (batchsig.MAX_PATH_HASHES + 1)),
    "path_one_hash_short": _changed(path=PATH[:-1]),
    "path_one_hash_extra": _changed(path=[*PATH, b"\x00" * 32]),
    "path_hash_31_bytes": _changed(path=[PATH[0][:31], *PATH[1:]]),
    "path_hash_flipped": _changed(path=[bytes([PATH[0][0] ^ 1]) + PATH[0][1:], *PATH[1:]]),
    "path_reversed": _changed(path=PATH[::-1]),
    "root_empty": _changed(root=b""),
    "root_33_bytes": _changed(root=VALID.root + b"\x00"),
    "root_of_another_tree": _changed(root=hashlib.sha256(b"other").digest()),
    "signature_empty": _changed(root_signature=b""),
    "signature_too_large": _changed(root_signature=b"\x30" * (batchsig.MAX_SIGNATURE_BYTES + 1)),
    "key_id_too_long": _changed(key_id="k" * (batchsig.MAX_KEY_ID_CHARS + 1)),
}


@pytest.mark.parametrize("proof", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_proofs_are_batch_proof_invalid(proof: exchange_pb2.BatchProof) -> None:
    for verify in (batchsig.verify_batch_item, batchsig.BatchVerifier().verify_item):
        assert (
            type(expect_error(BatchProofError, verify, DIGESTS[5], proof, KEY)) is BatchProofError
        )


@pytest.mark.parametrize(
    "signature",
    [b"\x30\x06\x02\x01\x01\x02\x01\x01", b"\x00" * 72, SIGNER.sign(b"another message")],
    ids=["tiny_der", "zeros", "over_other_bytes"],
)
def test_well_formed_proof_with_a_bad_signature_is_invalid_signature(signature: bytes) -> None:
    proof = _changed(root_signature=signature)
    result = expect_error(SignatureError, batchsig.verify_batch_item, DIGESTS[5], proof, KEY)
    assert type(result) is SignatureError


STORED = {
    "empty": b"",
    "too_large": b"\x0a" * (batchsig.MAX_PROOF_BYTES + 1),
    "truncated_field": VALID_BYTES[:-3],
    "bad_wire_type": b"\x0f\x01",
    "parses_but_size_zero": b"\x08\x00",  # index = 0, every other field absent
}


@pytest.mark.parametrize("data", STORED.values(), ids=STORED.keys())
def test_malformed_stored_proofs_are_batch_proof_invalid(data: bytes) -> None:
    assert type(expect_error(BatchProofError, batchsig.proof_from_bytes, data)) is BatchProofError


def test_an_empty_batch_layout_is_batch_proof_invalid() -> None:
    expect_error(BatchProofError, batchsig.check_batch_layout, [])


@fuzz_settings()
@given(proof=protobuf_messages(exchange_pb2.BatchProof))
def test_fuzz_random_proofs(proof: exchange_pb2.BatchProof) -> None:
    result = outcome(batchsig.BatchVerifier().verify_item, DIGESTS[5], proof, KEY)
    assert isinstance(result, BatchProofError | SignatureError), result


def _verified_fields(proof: exchange_pb2.BatchProof) -> tuple[object, ...]:
    return (proof.index, proof.size, list(proof.path), proof.root, proof.root_signature)


@fuzz_settings()
@given(data=st.one_of(st.binary(max_size=700), mutated(VALID_BYTES)))
def test_fuzz_stored_proof_bytes(data: bytes) -> None:
    parsed = outcome(batchsig.proof_from_bytes, data)
    if isinstance(parsed, Exception):
        assert isinstance(parsed, BatchProofError)
        return
    result = outcome(batchsig.verify_batch_item, DIGESTS[5], parsed, KEY)
    if result is None:  # only the same proof verifies (the key id is a hint, not checked)
        assert _verified_fields(parsed) == _verified_fields(VALID)
    else:
        assert isinstance(result, BatchProofError | SignatureError), result


@fuzz_settings()
@given(
    layout=st.lists(st.integers(0, len(PROOFS) - 1), max_size=len(PROOFS) + 3),
    tamper=st.booleans(),
)
def test_fuzz_batch_layouts(layout: list[int], tamper: bool) -> None:
    proofs = [PROOFS[i] for i in layout]
    if tamper and proofs:
        proofs[-1] = _changed(index=proofs[-1].index, root=hashlib.sha256(b"x").digest())
    result = outcome(batchsig.check_batch_layout, proofs)
    if layout == list(range(len(PROOFS))) and not tamper:
        assert result is None
    else:
        assert isinstance(result, BatchProofError), result
