"""Checkpoint and cosignature functions shared by the log, its witnesses and its verifiers; pure.

The log signs C2SP checkpoints with the key whose verifier text global configuration publishes
(``anchors.audit_log_key``, origin ``anchors.audit_log_origin``). Each security server witnesses
with the Ed25519 key global configuration lists as its ``witness_public_key``; its cosignature key
name is its server id (with characters a note key name cannot hold percent-encoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdx import errors, note
from cdx.globalconf import VerifiedGlobalConf
from cdx.keydocs import witness_name  # the one definition, kept importable from here

__all__ = [
    "OpenedCheckpoint",
    "body_of",
    "cosignature_lines",
    "log_verifier",
    "open_log_checkpoint",
    "witness_name",
    "witness_verifiers",
]


def log_verifier(key_text: str) -> note.NoteVerifier:
    """Parse the log's verifier key text.

    Raises:
        NoteFormatError: the text is not an Ed25519 note verifier key.
        LimitExceededError: the text is too long.
    """
    if not key_text:
        raise errors.FailedPreconditionError("no audit log key is configured in global conf")
    return note.NoteVerifier.from_key_text(key_text)


def witness_verifiers(conf: VerifiedGlobalConf) -> dict[str, note.CosignatureVerifier]:
    """``server id -> cosignature verifier`` for every server that registered a witness key."""
    out: dict[str, note.CosignatureVerifier] = {}
    for server in conf.servers.values():
        key = server.witness_public_key
        if key is not None:
            out[server.id] = note.CosignatureVerifier(witness_name(server.id), key)
    return out


@dataclass(frozen=True, slots=True)
class OpenedCheckpoint:
    """A checkpoint whose log signature and origin were checked."""

    checkpoint: note.Checkpoint
    text: str
    note: str
    cosigned_by: tuple[str, ...] = ()  # witness key names whose cosignatures verified

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root_hash


def open_log_checkpoint(
    signed_note: str,
    verifier: note.NoteVerifier,
    origin: str,
    witnesses: Iterable[note.CosignatureVerifier] = (),
) -> OpenedCheckpoint:
    """Verify a checkpoint's log signature and origin, and which witnesses cosigned it.

    A cosignature line by a known witness that does not verify is rejected (signed-note rule:
    a known key's bad signature invalidates the note); unknown lines are ignored.

    Raises:
        NoteFormatError: malformed note or checkpoint.
        NoteSignatureError: not signed by the log key, or a known witness's line is invalid.
        VerificationError: the origin is not the log's.
        LimitExceededError: the note is too large.
    """
    checkpoint, verified = note.open_checkpoint(signed_note, [verifier])
    if origin and checkpoint.origin != origin:
        raise errors.VerificationError("the checkpoint belongs to another log")
    known = {(w.name, w.key_id): w for w in witnesses}
    cosigned: list[str] = []
    for sig in verified.unverified:
        w = known.get((sig.name, sig.key_id))
        if w is None:
            continue
        w.verify_cosignature(sig, verified.text)
        cosigned.append(w.name)
    return OpenedCheckpoint(checkpoint, verified.text, signed_note, tuple(sorted(set(cosigned))))


def body_of(signed_note: str) -> str:
    """The text of a signed note (without verifying it).

    Raises:
        NoteFormatError: the note is malformed.
    """
    return note.parse_note(signed_note).text


def cosignature_lines(signed_note: str, names: Sequence[str]) -> list[str]:
    """The signature lines of ``signed_note`` made by the given key names."""
    return [s.to_line() for s in note.parse_note(signed_note).signatures if s.name in names]
