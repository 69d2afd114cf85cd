"""Checks audit-log evidence before the portal shows a "verified" mark; pure, no I/O.

An access is *verified* when all of these hold (DESIGN §8):

1. the checkpoint note is signed by the log key from global conf, for the configured origin;
2. at least ``witness_quorum`` registered witnesses (security servers) cosigned it
   (C2SP tlog-cosignature), otherwise the access is *pending*;
3. the leaf (the exact ``SignedAccessRecord`` bytes) is included in that checkpoint's tree
   (RFC 9162 §2.1.3.2);
4. the record is signed by the security server it names as recorder, with the key global conf
   registers for it, and that server hosts the subsystem it recorded for (the audit service's
   own entries under ``audit_service_key``; consent lifecycle events, recorded by
   ``urn:cdx:service:consent``, under ``consent_service_key``);
5. for a citizen, the opening matches: ``SHA-256(salt || national id)`` equals the record's
   subject commitment, so the entry really is about the logged-in citizen.

Any failed check gives *failed* with a stable problem code; the views never show "verified"
for anything these functions did not check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from google.protobuf.message import DecodeError

from audit.notes import witness_name
from cdx import crypto, errors, merkle, note, records
from cdx import tiles as tiles_math
from cdx.globalconf import VerifiedGlobalConf
from cdx.tiles import Tile
from cdx.v1 import audit_pb2, common_pb2
from portal.backends import InclusionProof, LogEntry, RecordOpening

RECORD_CONTEXT = records.SIGNING_CONTEXT
#: A leaf is one signed record: the record, a signature and a key id, plus framing.
MAX_LEAF_BYTES = records.MAX_RECORD_BYTES + records.MAX_SIGNATURE_BYTES + 1024
#: Kinds of leaf the audit service itself records (not a security server).
SERVICE_KINDS = frozenset({"inspector_query", "unseal", "log_anchor", "representative_access"})

_BASIS = {
    common_pb2.CONSENT: "CONSENT",
    common_pb2.LEGAL_OBLIGATION: "LEGAL_OBLIGATION",
    common_pb2.PUBLIC_TASK: "PUBLIC_TASK",
    common_pb2.VITAL_INTEREST: "VITAL_INTEREST",
}
_DECISION = {common_pb2.ALLOW: "ALLOW", common_pb2.DENY: "DENY"}
_ROLE = {common_pb2.CONSUMER: "CONSUMER", common_pb2.PROVIDER: "PROVIDER"}


class Status(StrEnum):
    VERIFIED = "verified"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class LogTrust:
    """The keys evidence is checked against, taken from verified global conf."""

    origin: str
    log_key: note.NoteVerifier
    witnesses: Mapping[str, note.CosignatureVerifier]  # witness (server id) -> key
    quorum: int
    recorder_keys: Mapping[str, crypto.PublicSigningKey]
    hosted: Mapping[str, frozenset[str]]  # server id -> subsystems it hosts
    service_key: crypto.PublicSigningKey | None
    consent_key: crypto.PublicSigningKey | None = None  # signs ``consent_event`` records

    @classmethod
    def from_conf(cls, conf: VerifiedGlobalConf) -> LogTrust:
        """Build from global conf; a witness's cosignature key is named by its server id
        (``audit.notes.witness_name``).

        Raises:
            VerificationError: the configured log key is malformed.
        """
        try:
            log_key = note.NoteVerifier.from_key_text(conf.audit_log_key)
        except (errors.MalformedError, errors.LimitExceededError) as exc:
            raise errors.VerificationError("the log key in global conf is malformed") from exc
        witnesses: dict[str, note.CosignatureVerifier] = {}
        keys: dict[str, crypto.PublicSigningKey] = {}
        hosted: dict[str, frozenset[str]] = {}
        for server in conf.servers.values():
            hosted[server.id] = server.subsystems
            try:
                keys[server.id] = server.signing_public_key
            except (ValueError, errors.CdxError):
                pass  # an unusable registration verifies nothing
            if server.witness_public_raw:
                try:
                    witnesses[server.id] = note.CosignatureVerifier(
                        witness_name(server.id), server.witness_public_raw
                    )
                except errors.MalformedError:
                    pass
        service_key = None
        if conf.audit_service_key_der:
            try:
                service_key = crypto.as_signing_public_key(
                    crypto.public_key_from_der(conf.audit_service_key_der)
                )
            except errors.CdxError:
                service_key = None
        consent_key = None
        if conf.consent_service_key_der:
            try:
                consent_key = crypto.as_signing_public_key(
                    crypto.public_key_from_der(conf.consent_service_key_der)
                )
            except errors.CdxError:
                consent_key = None
        return cls(
            conf.audit_log_origin,
            log_key,
            witnesses,
            conf.witness_quorum,
            keys,
            hosted,
            service_key,
            consent_key,
        )


@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoint whose log signature verified; ``witnesses`` lists valid cosigners."""

    origin: str
    size: int
    root_hash: bytes
    note: str
    witnesses: tuple[str, ...]
    cosigned_at: Mapping[str, datetime]
    quorum: int

    @property
    def quorum_met(self) -> bool:
        return len(self.witnesses) >= self.quorum


def check_checkpoint(signed_note: str, trust: LogTrust) -> CheckedCheckpoint:
    """Verify a signed checkpoint: the log key's signature, its origin, and its cosignatures.

    Raises:
        NoteFormatError: the note or checkpoint is malformed.
        LimitExceededError: the note is too large.
        NoteSignatureError: not signed by the log key, or a known key's signature is invalid.
        VerificationError: the checkpoint belongs to another log.
    """
    verifiers: list[note.Verifier] = [trust.log_key, *trust.witnesses.values()]
    try:
        opened = note.open_note(signed_note, verifiers, required=1)
    except ValueError as exc:  # two keys share name and id: conf is unusable for checking
        raise errors.VerificationError("ambiguous log and witness keys") from exc
    log_id = (trust.log_key.name, trust.log_key.key_id)
    if not any((s.name, s.key_id) == log_id for s in opened.verified):
        raise errors.NoteSignatureError("checkpoint is not signed by the log key")
    cp = note.Checkpoint.parse(opened.text)
    if cp.origin != trust.origin:
        raise errors.VerificationError("checkpoint belongs to another log")
    by_key = {(w.name, w.key_id): server for server, w in trust.witnesses.items()}
    witnesses: list[str] = []
    cosigned: dict[str, datetime] = {}
    for sig in opened.verified:
        server = by_key.get((sig.name, sig.key_id))
        if server is not None and server not in cosigned:
            witnesses.append(server)
            stamp = note.cosignature_timestamp(sig)
            cosigned[server] = datetime.fromtimestamp(stamp, tz=UTC)
    return CheckedCheckpoint(
        cp.origin, cp.size, cp.root_hash, signed_note, tuple(witnesses), cosigned, trust.quorum
    )


def check_consistency(
    old: CheckedCheckpoint, new: CheckedCheckpoint, proof: tuple[bytes, ...]
) -> None:
    """Check that ``new`` extends ``old`` (no rewrite, no fork), RFC 9162 §2.1.4.2.

    Raises:
        ProofError: the proof does not verify, or ``new`` is smaller than ``old``.
    """
    merkle.verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


# --- access records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """An access record parsed from signed leaf bytes (never a national id: commitments only)."""

    record_id: str
    message_id: str
    time: datetime
    recorder: str
    role: str
    client: str
    service: str
    purpose: str
    lawful_basis: str
    consent_id: str
    legal_reference: str
    decision: str
    reason_code: str
    released_fields: tuple[str, ...]
    sealed: bool
    kind: str
    note: str
    target_record_id: str
    subject_commitment: bytes
    key_id: str
    #: Who acted, for the entries that say: an inspector, or for consent events ``citizen``,
    #: ``system``, an agency's system or ``representative:<kind>`` (a legal representative).
    actor: str = ""


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_leaf(leaf_data: bytes) -> tuple[Access, bytes, bytes]:
    """Parse leaf bytes into the access record, the exact record bytes and the signature.

    Raises:
        MalformedError: the bytes are not a ``SignedAccessRecord`` holding an ``AccessRecord``.
    """
    if len(leaf_data) > MAX_LEAF_BYTES:
        raise errors.MalformedError("access record too large")
    try:
        signed = audit_pb2.SignedAccessRecord.FromString(leaf_data)
        r = audit_pb2.AccessRecord.FromString(signed.record)
    except DecodeError as exc:
        raise errors.MalformedError("not an access record") from exc
    if not r.record_id:
        raise errors.MalformedError("access record has no id")
    access = Access(
        record_id=r.record_id,
        message_id=r.message_id,
        time=_ms(r.time_ms),
        recorder=r.recorder,
        role=_ROLE.get(r.role, "UNSPECIFIED"),
        client=r.client,
        service=r.service,
        purpose=r.purpose,
        lawful_basis=_BASIS.get(r.lawful_basis, "UNSPECIFIED"),
        consent_id=r.consent_id,
        legal_reference=r.legal_reference,
        decision=_DECISION.get(r.decision, "UNSPECIFIED"),
        reason_code=r.reason_code,
        released_fields=tuple(r.released_fields),
        sealed=r.visibility == common_pb2.SEALED,
        kind=r.kind or "access",
        note=r.note,
        target_record_id=r.target_record_id,
        subject_commitment=r.subject_commitment,
        key_id=signed.key_id,
        actor=r.actor,
    )
    return access, signed.record, signed.signature


@dataclass(frozen=True)
class CheckedRecord:
    """A record with the outcome of every check; ``problem`` is a stable code when not verified."""

    index: int
    access: Access
    status: Status
    problem: str
    signature_ok: bool
    included: bool
    subject_ok: bool | None  # None when not checked (no subject given, or opening shredded)
    checkpoint_size: int
    leaf_hash: bytes
    leaf_data: bytes = b""  # the evidence, so a report can be checked again elsewhere
    proof_hashes: tuple[bytes, ...] = ()


def _recorder_key(access: Access, trust: LogTrust) -> crypto.PublicSigningKey | None:
    if access.recorder == records.CONSENT_RECORDER:
        return trust.consent_key if access.kind in records.CONSENT_KINDS else None
    if access.kind in SERVICE_KINDS and access.recorder not in trust.recorder_keys:
        return trust.service_key
    return trust.recorder_keys.get(access.recorder)


def _recorder_is_party(access: Access, trust: LogTrust) -> bool:
    """A security server may only record exchanges of the subsystems it hosts."""
    if access.kind != "access":
        return True
    hosted = trust.hosted.get(access.recorder, frozenset())
    side = access.client if access.role == "CONSUMER" else access.service.split("/", 1)[0]
    return side in hosted


def proof_from_tiles(tiles: Mapping[Tile, bytes], index: int, size: int) -> InclusionProof:
    """The inclusion proof of entry ``index`` in the tree of ``size`` entries, computed here from
    the log's tiles (c2sp.org/tlog-tiles, fetched from a CDN or the log's tile server) instead of
    taken from the log's API; ``check_record`` checks it like any other.

    Raises:
        InvalidArgumentError: ``index`` not below ``size``.
        ProofError: a tile is missing or malformed.
    """
    leaf, hashes = tiles_math.inclusion_proof(tiles, index, size)
    return InclusionProof(index, size, tuple(hashes), leaf)


def consistency_from_tiles(
    tiles: Mapping[Tile, bytes], size1: int, size2: int
) -> tuple[bytes, ...]:
    """The consistency proof from ``size1`` to ``size2``, computed here from the log's tiles
    (``check_consistency`` checks it against two verified checkpoints).

    Raises:
        InvalidArgumentError: not ``size1 <= size2``.
        ProofError: a tile is missing or malformed.
    """
    return tuple(tiles_math.consistency_proof(tiles, size1, size2))


def check_record(
    entry: LogEntry,
    proof: InclusionProof | None,
    checkpoint: CheckedCheckpoint | None,
    trust: LogTrust,
    *,
    opening: RecordOpening | None = None,
    subject: str | None = None,
) -> CheckedRecord:
    """Run every check on one log entry and say whether it may be shown as verified.

    Raises:
        MalformedError: the leaf is not an access record (nothing can be shown for it).
    """
    access, record_bytes, signature = parse_leaf(entry.leaf_data)
    lh = merkle.leaf_hash(entry.leaf_data)
    problems: list[str] = []

    key = _recorder_key(access, trust)
    signature_ok = False
    if key is None:
        problems.append("unknown_recorder")
    else:
        try:
            crypto.verify(key, signature, RECORD_CONTEXT + record_bytes)
            signature_ok = True
        except errors.VerificationError:
            problems.append("invalid_signature")
    if signature_ok and not _recorder_is_party(access, trust):
        signature_ok = False
        problems.append("recorder_not_party")

    subject_ok: bool | None = None
    if subject is not None and opening is not None:
        # No opening: crypto-shredded at the end of retention (DESIGN §8); the entry still
        # verifies, but whom it concerns can no longer be shown, so subject_ok stays None.
        subject_ok = False
        if opening.record_id == access.record_id:
            try:
                expected = crypto.commitment(opening.subject_salt, subject.encode("utf-8"))
                subject_ok = crypto.constant_time_equal(
                    expected, access.subject_commitment
                ) and crypto.constant_time_equal(opening.subject.encode(), subject.encode())
            except errors.InvalidArgumentError:
                subject_ok = False
        if not subject_ok:
            problems.append("subject_mismatch")

    included = False
    pending = ""
    size = checkpoint.size if checkpoint else 0
    if checkpoint is None or proof is None or entry.index >= checkpoint.size:
        pending = "not_in_checkpoint"
    elif proof.tree_size != checkpoint.size or proof.index != entry.index:
        problems.append("proof_mismatch")
    elif proof.leaf_hash and not crypto.constant_time_equal(proof.leaf_hash, lh):
        problems.append("leaf_hash_mismatch")
    else:
        try:
            merkle.verify_inclusion(
                lh, entry.index, checkpoint.size, proof.hashes, checkpoint.root_hash
            )
            included = True
        except errors.ProofError:
            problems.append("invalid_proof")
    if included and checkpoint is not None and not checkpoint.quorum_met:
        pending = "awaiting_cosignatures"

    if problems:
        status, problem = Status.FAILED, problems[0]
    elif pending:
        status, problem = Status.PENDING, pending
    else:
        status, problem = Status.VERIFIED, ""
    return CheckedRecord(
        entry.index,
        access,
        status,
        problem,
        signature_ok,
        included,
        subject_ok,
        size,
        lh,
        entry.leaf_data,
        proof.hashes if proof is not None else (),
    )


def unproven_by_tiles(record: CheckedRecord, size: int, tiles_problem: str) -> CheckedRecord:
    """An entry the checkpoint of ``size`` covers but the log's tiles did not prove
    (``tiles_problem``): *failed* when the tiles were malformed (``invalid_tiles``), *pending*
    while the endpoint does not serve them (``tiles_unavailable``)."""
    if not tiles_problem or record.index >= size or record.included:
        return record
    if record.status == Status.FAILED:
        return record
    status = Status.FAILED if tiles_problem == "invalid_tiles" else Status.PENDING
    return dataclasses.replace(record, status=status, problem=tiles_problem)
