"""Offline receipts: inclusion (c2sp.org/tlog-proof) and consistency, verified with nothing but
the log's and witnesses' keys; every tampering and malformed receipt is refused with a code."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import receipts
from cdx import errors, merkle, note

ORIGIN = "cdx.test/audit"
LOG = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
WITNESS = note.CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate())
ENTRIES = [f"entry {i}".encode() for i in range(13)]
TREE = merkle.InMemoryTree(merkle.leaf_hash(e) for e in ENTRIES)


def _checkpoint(size: int, cosigned: bool = True) -> str:
    text = note.Checkpoint(ORIGIN, size, TREE.root(size)).to_text()
    signed = LOG.sign(text)
    return signed + (WITNESS.cosign(text, 1_800_000_000) if cosigned else "")


TRUST = receipts.Trust(LOG.verifier(), ORIGIN, (WITNESS.verifier(),), quorum=1)


def _inclusion(index: int = 7, size: int = 13) -> str:
    proof = merkle.inclusion_proof(TREE, index, size)
    return receipts.inclusion_receipt(ENTRIES[index], index, proof, _checkpoint(size))


def test_an_inclusion_receipt_verifies_offline() -> None:
    text = _inclusion()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    verified = receipts.verify_inclusion_receipt(text, TRUST)
    assert (verified.index, verified.entry, verified.checkpoint.size) == (7, ENTRIES[7], 13)
    assert verified.checkpoint.cosigned_by == ("witness.example/w1",)


def test_a_consistency_receipt_verifies_offline() -> None:
    proof = merkle.consistency_proof(TREE, 5, 13)
    text = receipts.consistency_receipt(_checkpoint(5, cosigned=False), 5, proof, _checkpoint(13))
    verified = receipts.verify_consistency_receipt(text, TRUST)
    assert (verified.old.size, verified.new.size) == (5, 13)


def _tampered_inclusion() -> dict[str, tuple[str, type[errors.CdxError]]]:
    good = _inclusion()
    lines = good.split("\n")
    other_entry = lines.copy()
    other_entry[1] = "extra " + base64.b64encode(b"entry 8").decode()
    other_index = lines.copy()
    other_index[2] = "index 8"
    wrong = note.Checkpoint(ORIGIN, 13, bytes(32)).to_text()
    forked = receipts.inclusion_receipt(
        ENTRIES[7],
        7,
        merkle.inclusion_proof(TREE, 7, 13),
        LOG.sign(wrong) + WITNESS.cosign(wrong, 1_800_000_000),
    )
    return {
        "another entry": ("\n".join(other_entry), errors.ProofError),
        "another index": ("\n".join(other_index), errors.ProofError),
        "a root the entries do not make": (forked, errors.ProofError),
        "no quorum": (
            receipts.inclusion_receipt(
                ENTRIES[7], 7, merkle.inclusion_proof(TREE, 7, 13), _checkpoint(13, False)
            ),
            errors.VerificationError,
        ),
        "not signed by the log": (
            good.replace(
                good.split("\n\n", 1)[1],
                WITNESS.cosign(note.Checkpoint(ORIGIN, 13, TREE.root()).to_text(), 1),
            ),
            errors.NoteFormatError,
        ),
        "header": (good.replace("tlog-proof@v1", "tlog-proof@v2", 1), errors.MalformedError),
        "no extra": (good.replace("\nextra ", "\nextras ", 1), errors.MalformedError),
        "leading zero index": (good.replace("\nindex 7", "\nindex 07", 1), errors.MalformedError),
        "bad base64": (good.replace("\nindex 7\n", "\nindex 7\n!!!!\n", 1), errors.MalformedError),
        "short hash": (good.replace("\nindex 7\n", "\nindex 7\nAAAA\n", 1), errors.MalformedError),
        "huge": (good + "x" * 300_000, errors.LimitExceededError),
    }


@pytest.mark.parametrize("case", list(_tampered_inclusion()))
def test_tampered_or_malformed_inclusion_receipts_are_refused(case: str) -> None:
    text, error = _tampered_inclusion()[case]
    with pytest.raises(error):
        receipts.verify_inclusion_receipt(text, TRUST)


def test_tampered_consistency_receipts_are_refused() -> None:
    proof = merkle.consistency_proof(TREE, 5, 13)
    other = merkle.InMemoryTree(merkle.leaf_hash(e + b"!") for e in ENTRIES)
    rewritten_old = LOG.sign(note.Checkpoint(ORIGIN, 5, other.root(5)).to_text())
    cases = {
        "rewritten history": (
            receipts.consistency_receipt(rewritten_old, 5, proof, _checkpoint(13)),
            errors.ProofError,
        ),
        "old size line lies": (
            receipts.consistency_receipt(_checkpoint(5), 6, proof, _checkpoint(13)),
            errors.MalformedError,
        ),
        "header": ("cdx.example/tlog-consistency@v9\n", errors.MalformedError),
        "truncated": (
            receipts.consistency_receipt(_checkpoint(5), 5, proof, _checkpoint(13))[:200],
            errors.CdxError,
        ),
    }
    for name, (text, error) in cases.items():
        with pytest.raises(error):
            receipts.verify_consistency_receipt(text, TRUST)
        assert name
