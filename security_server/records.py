"""Builds the access records a security server signs for each decision (DESIGN §8).

A record never holds the subject id or a payload value: only salted commitments
(``SHA-256(salt32 || value)``). The salts and the subject go into a separate ``RecordOpening``
that travels beside the record to the audit log, where it is stored encrypted and can be
crypto-shredded. What the commitments cover (docs/adr/0002-exchange-envelope.md):

- ``subject_commitment``: the subject's national id (UTF-8), when the recorder saw it in clear;
- ``request_commitment``: ``request_value(subject, parameters)``, the deterministic
  serialization of ``RequestBody(subject, parameters)`` without the response key, so that the
  consumer's and the provider's records commit to the same value;
- ``response_commitment``: the deterministic serialization of the released ``ResponseBody``
  (empty on denials).

Every value a record keeps is validated first (``record_value``): identifiers by their grammar,
the subject as a national id. A value that does not validate — a hostile or broken request's
claim — is replaced by ``PLACEHOLDER`` (the record's reason code says why the request was
refused), and an unvalidated subject is neither committed to nor opened. So a request can
never make its server sign a record the audit log will refuse (docs/adr/0010-dead-letters.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import uuid6
from google.protobuf import struct_pb2

from cdx import crypto, errors, records
from cdx.globalconf import to_ms
from cdx.ids import CitizenId, ServiceId, SubsystemId
from cdx.v1 import audit_pb2, common_pb2, exchange_pb2
from security_server.outbox import Outbox
from security_server.replay import Claim

OK = "ok"

LAWFUL_BASIS_VALUES = {
    "CONSENT": common_pb2.CONSENT,
    "LEGAL_OBLIGATION": common_pb2.LEGAL_OBLIGATION,
    "PUBLIC_TASK": common_pb2.PUBLIC_TASK,
    "VITAL_INTEREST": common_pb2.VITAL_INTEREST,
}

#: ``note`` of a record made from an envelope header whose signature was not (yet) verified:
#: its client, service and purpose are claims, not facts.
NOTE_UNVERIFIED = "unverified_header"


def new_id() -> str:
    """A fresh UUIDv7 (time-ordered) for records and messages."""
    return str(uuid6.uuid7())


def request_value(subject: str, parameters: struct_pb2.Struct | None) -> bytes:
    """The bytes ``request_commitment`` covers (identical on the consumer and provider side)."""
    body = exchange_pb2.RequestBody(subject=subject)
    if parameters is not None and parameters.fields:
        body.parameters.CopyFrom(parameters)
    value: bytes = body.SerializeToString(deterministic=True)
    return value


@dataclass
class Decision:
    """What a server knows about one access decision, gathered as the checks run."""

    role: int
    message_id: str = ""
    client: str = ""
    service: str = ""
    purpose: str = ""
    lawful_basis: int = common_pb2.LAWFUL_BASIS_UNSPECIFIED
    consent_id: str = ""
    legal_reference: str = ""
    released_fields: tuple[str, ...] = ()
    subject: str | None = field(default=None, repr=False)
    request_value: bytes | None = field(default=None, repr=False)
    response_value: bytes | None = field(default=None, repr=False)
    sealed: bool = False
    verified: bool = False

    def set_lawful_basis(self, name: str) -> None:
        self.lawful_basis = LAWFUL_BASIS_VALUES.get(name, common_pb2.LAWFUL_BASIS_UNSPECIFIED)


def _commit(value: bytes | None) -> tuple[bytes, bytes]:
    if value is None:
        return b"", b""
    salt = crypto.new_salt()
    return salt, crypto.commitment(salt, value)


#: Longest free text a record keeps (a legal reference from global configuration).
MAX_RECORD_TEXT = 400
_CONTROL = dict.fromkeys([*range(0x20), 0x7F], "\ufffd")

#: What a record holds in place of a value that did not validate. Not an identifier of any
#: kind (no ``:``), so it can never be mistaken for a real client, service or purpose.
PLACEHOLDER = "invalid"

_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,64}")  # cdx.envelope: visible ASCII, at most 64
_PURPOSE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")  # the registry's purpose-code grammar
_CONSENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # UUIDs and the like


def _parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    # Cached: the same few clients and services come back on every record (two per exchange).
    @functools.lru_cache(maxsize=4096)
    def check(value: str) -> bool:
        try:
            parse(value)
        except errors.InvalidArgumentError:
            return False
        return True

    return check


#: The validator of every text field a record copies from a decision.
VALIDATORS: dict[str, Callable[[str], bool]] = {
    "message_id": lambda v: bool(_MESSAGE_ID.fullmatch(v)),
    "client": _parses(SubsystemId.parse),
    "service": _parses(ServiceId.parse),
    "purpose": lambda v: bool(_PURPOSE.fullmatch(v)),
    "consent_id": lambda v: bool(_CONSENT_ID.fullmatch(v)),
}


def record_value(kind: str, value: str) -> str:
    """``value`` as a record may keep it: unchanged when it validates as a ``kind``
    (a key of ``VALIDATORS``) or is empty (unknown), else ``PLACEHOLDER``."""
    if not value or VALIDATORS[kind](value):
        return value
    return PLACEHOLDER


def valid_subject(subject: str | None) -> str | None:
    """``subject`` when it is a well-formed national id, else ``None`` (not recorded)."""
    if subject is None:
        return None
    try:
        return CitizenId(subject).value
    except errors.InvalidCitizenIdError:
        return None


def clean_text(text: str) -> str:
    """Free text (a legal reference) as a record keeps it: control characters replaced and
    the length capped, so it cannot break the log or anything that displays it."""
    return text.translate(_CONTROL)[:MAX_RECORD_TEXT]


def build_record(
    decision: Decision,
    *,
    recorder: str,
    allowed: bool,
    reason_code: str,
    now: datetime,
    record_id: str | None = None,
) -> tuple[audit_pb2.AccessRecord, audit_pb2.RecordOpening]:
    """Turn a decision into an unsigned record and its opening (salts + subject).

    Values that do not validate become ``PLACEHOLDER``; a subject that is not a national id is
    left out together with the request commitment that covers it.

    Raises:
        InternalError: a record of released data would hold a value that did not validate
            (every value of an allowed request was checked before: only a defect gets here).
    """
    rid = record_id or new_id()
    texts = {kind: record_value(kind, getattr(decision, kind)) for kind in VALIDATORS}
    subject = valid_subject(decision.subject)
    if allowed and (subject is None or PLACEHOLDER in texts.values()):
        raise errors.InternalError("a record of released data holds an unvalidated value")
    subject_salt, subject_c = _commit(subject.encode() if subject is not None else None)
    request_salt, request_c = _commit(decision.request_value if subject is not None else None)
    response_salt, response_c = _commit(decision.response_value if allowed else None)
    record = audit_pb2.AccessRecord(
        record_id=rid,
        message_id=texts["message_id"],
        time_ms=to_ms(now),
        recorder=recorder,
        role=decision.role,  # type: ignore[arg-type]
        client=texts["client"],
        service=texts["service"],
        purpose=texts["purpose"],
        lawful_basis=decision.lawful_basis,  # type: ignore[arg-type]
        consent_id=texts["consent_id"],
        legal_reference=clean_text(decision.legal_reference),
        decision=common_pb2.ALLOW if allowed else common_pb2.DENY,
        reason_code=OK if allowed else reason_code,
        released_fields=sorted(decision.released_fields) if allowed else [],
        subject_commitment=subject_c,
        request_commitment=request_c,
        response_commitment=response_c,
        visibility=common_pb2.SEALED if decision.sealed else common_pb2.NORMAL,
        kind="access",
        note="" if decision.verified else NOTE_UNVERIFIED,
    )
    opening = audit_pb2.RecordOpening(
        record_id=rid,
        subject=subject or "",
        subject_salt=subject_salt,
        request_salt=request_salt,
        response_salt=response_salt,
    )
    return record, opening


def sign_item(
    record: audit_pb2.AccessRecord,
    opening: audit_pb2.RecordOpening,
    signer: crypto.Signer,
) -> audit_pb2.OutboxItem:
    """Sign ``record`` (``cdx.records.sign_access_record``) and pair it with its opening."""
    return audit_pb2.OutboxItem(record=records.sign_access_record(record, signer), opening=opening)


def open_commitment(salt: bytes, value: bytes, expected: bytes) -> bool:
    """Whether ``expected`` commits to ``value`` under ``salt`` (for verifiers and tests)."""
    return bool(salt) and crypto.constant_time_equal(crypto.commitment(salt, value), expected)


def field_names(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted unique field names (records list released fields in a stable order)."""
    return tuple(sorted(set(names)))


class Recorder:
    """Signs decisions as access records and makes them durable in the outbox."""

    def __init__(self, server_id: str, signer: crypto.Signer, outbox: Outbox) -> None:
        self.server_id = server_id
        self.signer = signer
        self.outbox = outbox

    def record(
        self,
        decision: Decision,
        *,
        allowed: bool,
        reason_code: str = OK,
        now: datetime,
        record_id: str | None = None,
        claim: Claim | None = None,
    ) -> str:
        """Build, sign and durably store the record of ``decision``; returns its record id.

        ``claim`` (a reserved message id) is burnt in the same transaction.

        Raises:
            ReplayError: ``claim`` was committed before by a replica (nothing stored).
            UnavailableError: the outbox could not commit (release nothing).
        """
        record, opening = build_record(
            decision,
            recorder=self.server_id,
            allowed=allowed,
            reason_code=reason_code,
            now=now,
            record_id=record_id,
        )
        self.outbox.record(sign_item(record, opening, self.signer), now, claim=claim)
        return record.record_id
