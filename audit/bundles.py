"""Access bundles: everything CDX knows about one citizen's data use, signed, and checkable
offline with the log's key and the consent service's key; pure, no I/O.

An access request (Law 91/2025 Art. 4; ADR 0020) yields one JSON file::

    {"format": "cdx-access-bundle/v1",
     "bundle": {...},                       # the body below
     "signature": "<header>..<signature>"}  # JWS with a detached payload (RFC 7515 App. F)

The signature is EdDSA by the consent service's key (``anchors.consent_service_key``; also in
the log's ``/.well-known/cdx/jwks.json``) over ``<header>.<base64url(payload)>``, the payload
being the body as canonical JSON (keys sorted, no whitespace, UTF-8; for the strings, integers
and booleans a body holds, RFC 8785). The body:

- ``subject`` (the citizen's national id: the file is theirs alone), ``request_id``,
  ``issued_at``, ``issuer``, ``instance``;
- ``log``: the origin, and the checkpoint (with its witnesses' cosignatures) every entry is
  proven against;
- ``entries``: each entry of the citizen's history as an offline receipt in the format of
  ``cdx audit proof --export`` (C2SP tlog-proof: the entry, its index, its inclusion proof,
  the checkpoint), with the salt that opens its subject commitment (and, for a request's step,
  the salt of its text's commitment); ``entries_omitted`` counts those the checkpoint did not
  cover yet or whose opening was shredded;
- ``consents``: the citizen's consents with their signed artefacts (JWS) and event histories;
- ``requests``: the citizen's data-subject requests, each step with its text and the record id
  of its entry in the log.

``check_evidence`` is what the consent service runs before it signs: every entry is in the
checkpoint, the checkpoint is the log's with the witness quorum, and every opening opens to
the citizen. ``verify_bundle`` is what ``cdx audit bundle verify`` runs, with only the keys
given: the signature, every receipt (log key, origin, quorum), every opening, every artefact,
every logged step's text against its commitment. A bundle proves that each entry in it is in
the log and is about its subject; that the log indexed no other entry under the subject rests
on the log, as the citizen's history does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from audit import notes, receipts
from cdx import crypto, errors, merkle, records
from cdx.globalconf import VerifiedGlobalConf
from cdx.v1 import audit_pb2

__all__ = [
    "FORMAT",
    "JWS_TYPE",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_ENTRIES",
    "EvidenceEntry",
    "ProvenEntry",
    "VerifiedBundle",
    "bundle_body",
    "canonical_json",
    "check_evidence",
    "signed_file",
    "trust_of",
    "verify_bundle",
]

FORMAT = "cdx-access-bundle/v1"
JWS_TYPE = "cdx-access-bundle+jws"
ARTEFACT_TYPE = "cdx-consent+jwt"
#: The most entries one bundle proves (each carries its receipt: about 2.5 KB).
MAX_BUNDLE_ENTRIES = 1000
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
_LEAF_LIMIT = records.MAX_RECORD_BYTES + records.MAX_SIGNATURE_BYTES + 1024


@dataclass(frozen=True)
class EvidenceEntry:
    """One entry of a citizen's history as the log served it: the leaf, its proof and the
    salts of its opening."""

    index: int
    leaf: bytes
    proof: tuple[bytes, ...]
    subject_salt: bytes
    request_salt: bytes = b""


@dataclass(frozen=True)
class ProvenEntry:
    """An evidence entry whose proof and opening checked out."""

    evidence: EvidenceEntry
    record: audit_pb2.AccessRecord


@dataclass(frozen=True)
class VerifiedBundle:
    """What ``verify_bundle`` established."""

    subject: str
    request_id: str
    issued_at: str
    origin: str
    tree_size: int
    cosigned_by: tuple[str, ...]
    entries_by_kind: Mapping[str, int]
    entries_omitted: int
    consents: int
    requests: int
    steps_in_log: int
    steps_not_yet_in_log: int


def trust_of(conf: VerifiedGlobalConf) -> receipts.Trust:
    """The log key, origin, registered witnesses and quorum of global configuration.

    Raises:
        NoteFormatError: the configured log key is malformed.
    """
    return receipts.Trust(
        notes.log_verifier(conf.audit_log_key),
        conf.audit_log_origin,
        tuple(notes.witness_verifiers(conf).values()),
        conf.witness_quorum,
    )


def _record_of(leaf: bytes) -> audit_pb2.AccessRecord:
    try:
        signed = audit_pb2.SignedAccessRecord.FromString(leaf)
        record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(signed.record)
    except DecodeError as exc:
        raise errors.MalformedError("an entry is not a signed access record") from exc
    return record


def _opened(checkpoint_note: str, trust: receipts.Trust) -> notes.OpenedCheckpoint:
    opened = notes.open_log_checkpoint(
        checkpoint_note, trust.log_key, trust.origin, trust.witnesses
    )
    if len(opened.cosigned_by) < trust.quorum:
        raise errors.VerificationError(
            f"the checkpoint has {len(opened.cosigned_by)} of the {trust.quorum} witness "
            "cosignatures required"
        )
    return opened


def _opens(salt: bytes, subject: str, commitment: bytes) -> bool:
    try:
        return crypto.constant_time_equal(crypto.commitment(salt, subject.encode()), commitment)
    except errors.InvalidArgumentError:
        return False


def check_evidence(
    checkpoint_note: str, entries: Sequence[EvidenceEntry], trust: receipts.Trust, subject: str
) -> tuple[notes.OpenedCheckpoint, list[ProvenEntry]]:
    """Check a citizen's history before it goes into a bundle: the checkpoint is the log's
    (key, origin, witness quorum), every entry is in it, every opening opens to ``subject``.

    Raises:
        LimitExceededError: more than ``MAX_BUNDLE_ENTRIES`` entries, or an oversized leaf.
        NoteFormatError / NoteSignatureError / VerificationError: not the log's checkpoint, or
            without the quorum; an opening that does not open to ``subject``.
        ProofError: an entry is not in the checkpoint's tree.
        MalformedError: a leaf that does not parse.
    """
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise errors.LimitExceededError(f"a bundle holds at most {MAX_BUNDLE_ENTRIES} entries")
    opened = _opened(checkpoint_note, trust)
    proven: list[ProvenEntry] = []
    seen: set[int] = set()
    for entry in entries:
        if len(entry.leaf) > _LEAF_LIMIT:
            raise errors.LimitExceededError("an entry is larger than any record")
        if entry.index in seen:
            raise errors.MalformedError("an entry is given twice")
        seen.add(entry.index)
        merkle.verify_inclusion(
            merkle.leaf_hash(entry.leaf), entry.index, opened.size, list(entry.proof), opened.root
        )
        record = _record_of(entry.leaf)
        if not _opens(entry.subject_salt, subject, record.subject_commitment):
            raise errors.VerificationError("an entry's opening is not about this citizen")
        proven.append(ProvenEntry(entry, record))
    return opened, proven


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise errors.MalformedError("not base64url") from exc


def canonical_json(obj: Any) -> bytes:
    """The signed form of a body: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def bundle_body(
    *,
    request_id: str,
    issued_at: str,
    issuer: str,
    instance: str,
    subject: str,
    origin: str,
    checkpoint_note: str,
    tree_size: int,
    entries: Sequence[ProvenEntry],
    entries_omitted: int,
    consents: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The body of a bundle (see the module docstring), newest entry first."""
    out_entries = []
    for p in sorted(entries, key=lambda p: p.evidence.index, reverse=True):
        e = p.evidence
        item: dict[str, Any] = {
            "record_id": p.record.record_id,
            "kind": p.record.kind or "access",
            "receipt": receipts.inclusion_receipt(e.leaf, e.index, e.proof, checkpoint_note),
            "subject_salt": _b64(e.subject_salt),
        }
        if e.request_salt:
            item["request_salt"] = _b64(e.request_salt)
        out_entries.append(item)
    return {
        "format": FORMAT,
        "request_id": request_id,
        "issued_at": issued_at,
        "issuer": issuer,
        "instance": instance,
        "subject": subject,
        "log": {"origin": origin, "tree_size": tree_size, "checkpoint": checkpoint_note},
        "entries": out_entries,
        "entries_omitted": entries_omitted,
        "consents": [dict(c) for c in consents],
        "requests": [dict(r) for r in requests],
    }


def signed_file(body: Mapping[str, Any], signer: crypto.Signer) -> bytes:
    """The bundle file: the body and its detached JWS by ``signer`` (an Ed25519 key)."""
    header = _b64url(canonical_json({"alg": "EdDSA", "kid": signer.key_id, "typ": JWS_TYPE}))
    signature = signer.sign(f"{header}.{_b64url(canonical_json(body))}".encode("ascii"))
    document = {"format": FORMAT, "bundle": body, "signature": f"{header}..{_b64url(signature)}"}
    return json.dumps(document, indent=1, ensure_ascii=False).encode() + b"\n"


# --- offline verification --------------------------------------------------------------------


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise errors.MalformedError(f"the bundle's {name!r} is missing or of the wrong type")
    return value


def _check_jws(
    header_b64: str, payload: bytes, signature_b64: str, key: crypto.PublicSigningKey, typ: str
) -> dict[str, Any]:
    try:
        header = json.loads(_unb64url(header_b64))
    except ValueError as exc:
        raise errors.MalformedError("a JWS header is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "EdDSA" or header.get("typ") != typ:
        raise errors.MalformedError(f"not an EdDSA {typ}")
    if header.get("kid", crypto.key_id(key)) != crypto.key_id(key):
        raise errors.UnknownKeyError("signed with another key than the one given")
    signing_input = f"{header_b64}.{_b64url(payload)}".encode("ascii")
    crypto.verify(key, _unb64url(signature_b64), signing_input)
    return header


def _artefact_claims(jws: str, key: crypto.PublicSigningKey) -> dict[str, Any]:
    parts = jws.split(".")
    if len(parts) != 3:
        raise errors.MalformedError("a consent artefact is not a compact JWS")
    payload = _unb64url(parts[1])
    _check_jws(parts[0], payload, parts[2], key, ARTEFACT_TYPE)
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise errors.MalformedError("a consent artefact's claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise errors.MalformedError("a consent artefact's claims are not an object")
    return claims


def _check_consents(consents: Sequence[Any], subject: str, key: crypto.PublicSigningKey) -> None:
    for consent in consents:
        if not isinstance(consent, dict):
            raise errors.MalformedError("a consent is not an object")
        cid = _field(consent, "id", str)
        terms = _field(consent, "terms", dict)
        if terms.get("sub") != subject:
            raise errors.VerificationError(f"consent {cid} is not the subject's")
        artefact = consent.get("artefact") or ""
        if not artefact:
            continue  # pending or rejected: nothing was ever signed
        claims = _artefact_claims(_field(consent, "artefact", str), key)
        if claims.get("consent_id") != cid or claims.get("sub") != subject:
            raise errors.VerificationError(f"the artefact of consent {cid} names another consent")
        if any(claims.get(k) != v for k, v in terms.items()):
            raise errors.VerificationError(f"the terms of consent {cid} differ from its artefact")


def _steps(requests: Sequence[Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Every step of every request by the record id of its entry: (request id, step)."""
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for request in requests:
        if not isinstance(request, dict):
            raise errors.MalformedError("a request is not an object")
        rid = _field(request, "id", str)
        for step in _field(request, "events", list):
            if not isinstance(step, dict):
                raise errors.MalformedError("a request step is not an object")
            out[_field(step, "record_id", str)] = (rid, step)
    return out


def verify_bundle(
    data: bytes,
    trust: receipts.Trust,
    consent_key: crypto.PublicSigningKey,
    *,
    keep: Callable[[int, audit_pb2.AccessRecord], None] | None = None,
) -> VerifiedBundle:
    """Verify a bundle file offline with the log's trust and the consent service's key.

    ``keep`` is called with each proven entry's index and record (for a listing).

    Raises:
        LimitExceededError / MalformedError / NoteFormatError: not a bundle of this format.
        SignatureError / UnknownKeyError: the bundle or an artefact is not signed by the key.
        NoteSignatureError / VerificationError: a checkpoint that is not the log's or lacks the
            quorum; an entry or consent not about the subject; a step's text that is not the
            one the log committed to; receipts against another checkpoint than the bundle's.
        ProofError: an entry is not in the checkpoint's tree.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise errors.LimitExceededError("a bundle is at most 16 MiB")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.MalformedError("the bundle is not JSON") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise errors.MalformedError(f"not a {FORMAT} file")
    body = _field(document, "bundle", dict)
    parts = _field(document, "signature", str).split(".")
    if len(parts) != 3 or parts[1]:
        raise errors.MalformedError("the signature is not a detached compact JWS")
    _check_jws(parts[0], canonical_json(body), parts[2], consent_key, JWS_TYPE)

    # Signed by the consent service: now every check of its content.
    if body.get("format") != FORMAT:
        raise errors.MalformedError(f"not a {FORMAT} body")
    subject = _field(body, "subject", str)
    log = _field(body, "log", dict)
    entries = _field(body, "entries", list)
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise errors.LimitExceededError(f"a bundle holds at most {MAX_BUNDLE_ENTRIES} entries")
    checkpoint = _opened(_field(log, "checkpoint", str), trust)
    steps = _steps(_field(body, "requests", list))
    kinds: Counter[str] = Counter()
    in_log = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise errors.MalformedError("an entry is not an object")
        found = receipts.verify_inclusion_receipt(_field(entry, "receipt", str), trust)
        if found.checkpoint.size != checkpoint.size or found.checkpoint.root != checkpoint.root:
            raise errors.VerificationError("an entry is proven against another checkpoint")
        record = _record_of(found.entry)
        if record.record_id != entry.get("record_id"):
            raise errors.VerificationError("an entry's receipt holds another record")
        if not _opens(_salt(entry, "subject_salt"), subject, record.subject_commitment):
            raise errors.VerificationError(f"entry {found.index} is not about the subject")
        if record.kind in records.CONSENT_KINDS:
            # The consent service's own records: their signature is checkable here too.
            records.verify_access_record(
                audit_pb2.SignedAccessRecord.FromString(found.entry), consent_key
            )
        if record.record_id in steps:
            in_log += 1
            _check_step(record, entry, steps[record.record_id])
        kinds[record.kind or "access"] += 1
        if keep is not None:
            keep(found.index, record)
    consents = _field(body, "consents", list)
    _check_consents(consents, subject, consent_key)
    return VerifiedBundle(
        subject=subject,
        request_id=str(body.get("request_id", "")),
        issued_at=str(body.get("issued_at", "")),
        origin=checkpoint.checkpoint.origin,
        tree_size=checkpoint.size,
        cosigned_by=tuple(checkpoint.cosigned_by),
        entries_by_kind=dict(kinds),
        entries_omitted=int(body.get("entries_omitted", 0) or 0),
        consents=len(consents),
        requests=len(_field(body, "requests", list)),
        steps_in_log=in_log,
        steps_not_yet_in_log=len(steps) - in_log,
    )


def _salt(entry: Mapping[str, Any], name: str) -> bytes:
    text = entry.get(name, "")
    if not isinstance(text, str):
        raise errors.MalformedError(f"an entry's {name} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise errors.MalformedError(f"an entry's {name} is not base64") from exc


def _check_step(
    record: audit_pb2.AccessRecord,
    entry: Mapping[str, Any],
    step: tuple[str, Mapping[str, Any]],
) -> None:
    """A request's step as the bundle tells it is the one the log recorded: same request,
    same action, and (when the log committed to a text) the same text."""
    request_id, event = step
    if record.kind != records.KIND_SUBJECT_REQUEST or record.message_id != request_id:
        raise errors.VerificationError("a request step names another entry of the log")
    if record.reason_code != event.get("action"):
        raise errors.VerificationError(f"a step of request {request_id} is not the one logged")
    text = event.get("text", "")
    if not isinstance(text, str):
        raise errors.MalformedError("a step's text is not a string")
    if record.request_commitment:
        if not _opens(_salt(entry, "request_salt"), text, record.request_commitment):
            raise errors.VerificationError(
                f"a text of request {request_id} is not the one the log committed to"
            )
    elif text:
        raise errors.VerificationError(f"the log committed to no text of request {request_id}")
