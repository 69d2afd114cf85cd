"""Signs and verifies access records (the audit log's leaves, DESIGN §8); pure, no I/O.

A record travels as ``SignedAccessRecord``: the exact serialized ``AccessRecord`` bytes, a
signature and the signer's key id (a hint)::

    signature = Sign(recorder signing key, "cdx/access-record/v1\\n" || record)

Verification follows DESIGN §5: verify the bytes first, parse them second; the algorithm comes
from the public key the verifier looked up (the recorder's registered key), never from the
record. Both the security servers (who sign) and the audit log (who verifies before appending)
use this module.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from cdx import crypto, errors
from cdx.v1 import audit_pb2

__all__ = [
    "CONSENT_KINDS",
    "CONSENT_RECORDER",
    "KIND_CONSENT_EVENT",
    "KIND_SUBJECT_REQUEST",
    "MAX_KEY_ID_CHARS",
    "MAX_RECORD_BYTES",
    "MAX_SIGNATURE_BYTES",
    "SIGNING_CONTEXT",
    "parse_unverified_record",
    "record_signing_input",
    "sign_access_record",
    "verify_access_record",
]

SIGNING_CONTEXT = b"cdx/access-record/v1\n"
#: Largest serialized record accepted from a peer (a record holds ids, codes and 3 hashes).
MAX_RECORD_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 512
MAX_KEY_ID_CHARS = 128
#: ``recorder`` of consent lifecycle events: the consent service (its certificate URI); they
#: are signed with the consent service key global configuration registers.
CONSENT_RECORDER = "urn:cdx:service:consent"
KIND_CONSENT_EVENT = "consent_event"
#: A transition of a data-subject request (access, objection, ... complaint), also recorded by
#: the consent service, which holds the requests (ADR 0020).
KIND_SUBJECT_REQUEST = "subject_request"
#: Every kind of entry the consent service records (under its registered key).
CONSENT_KINDS = frozenset({KIND_CONSENT_EVENT, KIND_SUBJECT_REQUEST})


def record_signing_input(record_bytes: bytes) -> bytes:
    """The exact bytes an access-record signature covers."""
    return SIGNING_CONTEXT + record_bytes


def sign_access_record(
    record: audit_pb2.AccessRecord, signer: crypto.Signer
) -> audit_pb2.SignedAccessRecord:
    """Serialize ``record`` deterministically and sign it with ``signer``.

    Raises:
        LimitExceededError: the serialized record exceeds ``MAX_RECORD_BYTES``.
    """
    record_bytes = record.SerializeToString(deterministic=True)
    if len(record_bytes) > MAX_RECORD_BYTES:
        raise errors.LimitExceededError("access record too large")
    return audit_pb2.SignedAccessRecord(
        record=record_bytes,
        signature=signer.sign(record_signing_input(record_bytes)),
        key_id=signer.key_id,
    )


def verify_access_record(
    signed: audit_pb2.SignedAccessRecord, public_key: crypto.PublicSigningKey
) -> audit_pb2.AccessRecord:
    """Verify a signed record under the recorder's registered ``public_key``, then parse it.

    The caller chooses ``public_key`` (e.g. the signing key global configuration registers for
    the server named by the record); ``signed.key_id`` is only a hint for that look-up. After
    parsing, check that ``record.recorder`` is the server whose key verified it.

    Raises:
        LimitExceededError: the record or signature exceeds its size limit.
        MalformedError: empty record or signature, or bytes that do not parse.
        SignatureError: the signature does not verify under ``public_key``.
        UnknownKeyError: ``public_key`` is not a supported signing key.
    """
    if len(signed.record) > MAX_RECORD_BYTES or len(signed.signature) > MAX_SIGNATURE_BYTES:
        raise errors.LimitExceededError("signed access record too large")
    if not signed.record or not signed.signature:
        raise errors.MalformedError("signed access record lacks record or signature")
    crypto.verify(public_key, bytes(signed.signature), record_signing_input(bytes(signed.record)))
    try:
        record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(signed.record)
    except DecodeError as exc:
        raise errors.MalformedError("access record does not parse") from exc
    if not record.record_id or not record.recorder:
        raise errors.MalformedError("access record lacks record id or recorder")
    return record


def parse_unverified_record(signed: audit_pb2.SignedAccessRecord) -> audit_pb2.AccessRecord:
    """Parse a record without verifying it, only to learn which key to verify it with.

    Raises:
        LimitExceededError: the record exceeds ``MAX_RECORD_BYTES``.
        MalformedError: the bytes do not parse or lack a recorder.
    """
    if len(signed.record) > MAX_RECORD_BYTES:
        raise errors.LimitExceededError("access record too large")
    if len(signed.key_id) > MAX_KEY_ID_CHARS:
        raise errors.LimitExceededError("key id too long")
    try:
        record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(signed.record)
    except DecodeError as exc:
        raise errors.MalformedError("access record does not parse") from exc
    if not record.recorder:
        raise errors.MalformedError("access record lacks a recorder")
    return record
