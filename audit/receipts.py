"""Offline receipts: a self-contained proof that an entry is in the log (c2sp.org/tlog-proof) or
that the log only grew between two checkpoints, and their offline verification; pure, no I/O.

**Inclusion** (``.tlog-proof``, c2sp.org/tlog-proof@v1)::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry: the signed access record exactly as logged>
    index <entry index>
    <inclusion proof hashes, base64, one per line, leaf side first>
    <empty line>
    <the checkpoint, cosignatures included>

The ``extra`` line carries the entry itself, so the receipt proves *which* record is in the log
(the record names no citizen: salted commitments only; a citizen keeps the opening separately).

**Consistency** (``.tlog-consistency``, this project's format built from the same parts)::

    cdx.example/tlog-consistency@v1
    <the older checkpoint>
    <empty line>
    old <size of the older checkpoint>
    <consistency proof hashes, base64, one per line>
    <empty line>
    <the newer checkpoint>

Verifying needs only the log's note verifier key and origin, and for a quorum the witnesses'
cosignature verifier keys (``/.well-known/cdx/``, ``cdx registry conf show``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from audit import notes
from cdx import errors, merkle, note

INCLUSION_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "cdx.example/tlog-consistency@v1"
MAX_RECEIPT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Trust:
    """What an offline verifier trusts: the log key and origin, witness keys and a quorum."""

    log_key: note.NoteVerifier
    origin: str
    witnesses: tuple[note.CosignatureVerifier, ...] = ()
    quorum: int = 0


@dataclass(frozen=True, slots=True)
class VerifiedInclusion:
    index: int
    entry: bytes
    checkpoint: notes.OpenedCheckpoint


@dataclass(frozen=True, slots=True)
class VerifiedConsistency:
    old: notes.OpenedCheckpoint
    new: notes.OpenedCheckpoint


def _b64(hashes: Sequence[bytes]) -> str:
    return "".join(base64.b64encode(h).decode() + "\n" for h in hashes)


def inclusion_receipt(
    entry: bytes, index: int, proof: Sequence[bytes], checkpoint_note: str
) -> str:
    """The ``.tlog-proof`` text of an entry (see the module docstring)."""
    return (
        f"{INCLUSION_HEADER}\nextra {base64.b64encode(entry).decode()}\nindex {index}\n"
        + _b64(proof)
        + "\n"
        + checkpoint_note
    )


def consistency_receipt(old_note: str, old_size: int, proof: Sequence[bytes], new_note: str) -> str:
    """The ``.tlog-consistency`` text (see the module docstring)."""
    return f"{CONSISTENCY_HEADER}\n{old_note}\nold {old_size}\n{_b64(proof)}\n{new_note}"


def _hashes(lines: Sequence[str]) -> list[bytes]:
    out = []
    for line in lines:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as exc:
            raise errors.MalformedError("a proof line is not base64") from exc
        if len(h) != merkle.HASH_SIZE:
            raise errors.MalformedError("a proof hash is not 32 bytes")
        out.append(h)
    if len(out) > merkle.MAX_PROOF_HASHES:
        raise errors.MalformedError("a proof of more than 64 hashes")
    return out


def _number(line: str, prefix: str) -> int:
    text = line.removeprefix(prefix)
    if text == line or not text.isascii() or not text.isdigit() or text != str(int(text)):
        raise errors.MalformedError(f"expected '{prefix}<decimal without leading zeroes>'")
    return int(text)


def _open(checkpoint_note: str, trust: Trust) -> notes.OpenedCheckpoint:
    opened = notes.open_log_checkpoint(
        checkpoint_note, trust.log_key, trust.origin, trust.witnesses
    )
    if len(opened.cosigned_by) < trust.quorum:
        raise errors.VerificationError(
            f"the checkpoint has {len(opened.cosigned_by)} of the {trust.quorum} witness "
            "cosignatures required"
        )
    return opened


def _check_size(text: str) -> None:
    if len(text.encode()) > MAX_RECEIPT_BYTES:
        raise errors.LimitExceededError("a receipt is at most 256 KiB")


def verify_inclusion_receipt(text: str, trust: Trust) -> VerifiedInclusion:
    """Verify a ``.tlog-proof`` offline: the checkpoint's log signature and origin, the witness
    quorum, and that the entry (the ``extra`` line) is at ``index`` in its tree.

    Raises:
        MalformedError / NoteFormatError / LimitExceededError: not a receipt of this format.
        NoteSignatureError / VerificationError: the checkpoint or a cosignature does not verify,
            or the quorum is not met.
        ProofError: the entry is not in the tree the checkpoint signs.
    """
    _check_size(text)
    head, sep, checkpoint_note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) < 3 or lines[0] != INCLUSION_HEADER:
        raise errors.MalformedError(f"not a {INCLUSION_HEADER} receipt")
    if not lines[1].startswith("extra "):
        raise errors.MalformedError("the receipt carries no entry (extra line)")
    try:
        entry = base64.b64decode(lines[1][len("extra ") :], validate=True)
    except binascii.Error as exc:
        raise errors.MalformedError("the extra line is not base64") from exc
    index = _number(lines[2], "index ")
    proof = _hashes(lines[3:])
    opened = _open(checkpoint_note, trust)
    merkle.verify_inclusion(merkle.leaf_hash(entry), index, opened.size, proof, opened.root)
    return VerifiedInclusion(index, entry, opened)


def verify_consistency_receipt(text: str, trust: Trust) -> VerifiedConsistency:
    """Verify a ``.tlog-consistency`` offline: both checkpoints signed by the log (the newer one
    with the witness quorum) and the newer tree extending the older.

    Raises:
        MalformedError / NoteFormatError / LimitExceededError: not a receipt of this format.
        NoteSignatureError / VerificationError: a checkpoint does not verify, or no quorum.
        ProofError: the newer tree does not extend the older one.
    """
    _check_size(text)
    header, sep, rest = text.partition("\n")
    if not sep or header != CONSISTENCY_HEADER:
        raise errors.MalformedError(f"not a {CONSISTENCY_HEADER} receipt")
    # The older note: its text, a blank line, its signature lines, then "old N".
    body, sep, after = rest.partition("\n\n")
    sig_lines, sep2, proof_part = after.partition("\nold ")
    if not sep or not sep2:
        raise errors.MalformedError("the older checkpoint or the old size line is missing")
    old_note = f"{body}\n\n{sig_lines.rstrip(chr(10))}\n"
    proof_head, sep, new_note = ("old " + proof_part).partition("\n\n")
    if not sep:
        raise errors.MalformedError("the newer checkpoint is missing")
    lines = proof_head.split("\n")
    old_size = _number(lines[0], "old ")
    proof = _hashes(lines[1:])
    old = notes.open_log_checkpoint(old_note, trust.log_key, trust.origin, trust.witnesses)
    new = _open(new_note, trust)
    if old.size != old_size:
        raise errors.MalformedError("the old size line does not match the older checkpoint")
    merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    return VerifiedConsistency(old, new)
