"""Ships every step of every data-subject request to the audit log, as consent events go there.

Each step (``subject_request_events``) becomes a ``subject_request`` record signed with the
consent service key (recorder ``urn:cdx:service:consent``): the request id as ``message_id``
(so an inspector finds all steps of one request), the addressee as ``client``, purpose and
service, the step as ``reason_code``, the request's kind as ``note``, the actor, the salted
commitment of the citizen (its opening shipped beside it, so the step is in their history) and,
when the step came with a text, a salted commitment of the text (its salt in the opening's
``request_salt``: the citizen's access bundle carries the text, and a verifier checks it is the
one logged). Never the text itself, never the national id.

The record is a pure function of the step (record id from the key id and sequence number,
salts keyed by the tag key, Ed25519 is deterministic), so a retry is a duplicate for the log.
The thread, cursor and backoff are ``consent.auditlog.ConsentAuditShipper``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

from cdx import crypto, errors, records
from cdx.v1 import audit_pb2, common_pb2
from consent import requests_store as rstore
from consent.auditlog import BATCH, ConsentAuditShipper
from consent.requests_store import DOSSIER, RequestEventRow
from consent.sealing import DataKeys

_RECORD_NAMESPACE = uuid.UUID("8c2f1d3e-5b6a-5e47-8f90-1a2b3c4d5e6f")
_SALT_CONTEXT = b"cdx/consent/request-audit-salt/v1\n"
_TEXT_SALT_CONTEXT = b"cdx/consent/request-text-salt/v1\n"


def record_id(key_id: str, seq: int) -> str:
    """The deterministic record id of request step ``seq`` signed under ``key_id``."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{key_id}/request/{seq}"))


def open_dossier(keys: DataKeys, request_id: str, sealed: str) -> dict[str, object]:
    """A request's dossier: ``{"subject": id, "texts": {seq: text}}``.

    Raises:
        KeyStoreError: it does not open with ``keys``.
        MalformedError: it opens to something else.
    """
    try:
        dossier = json.loads(keys.open(request_id, DOSSIER, sealed))
    except ValueError as exc:
        raise errors.MalformedError("a stored request does not parse") from exc
    if (
        not isinstance(dossier, dict)
        or not isinstance(dossier.get("subject"), str)
        or not isinstance(dossier.get("texts"), dict)
    ):
        raise errors.MalformedError("a stored request does not parse")
    return dossier


def step_item(
    event: RequestEventRow, subject: str, text: str, signer: crypto.Signer, salt_key: bytes
) -> audit_pb2.OutboxItem:
    """The signed record and opening of one step (the same bytes on every call)."""
    rid = record_id(signer.key_id, event.seq)
    salt = hmac.new(salt_key, _SALT_CONTEXT + rid.encode(), hashlib.sha256).digest()
    record = audit_pb2.AccessRecord(
        record_id=rid,
        message_id=event.request_id,
        time_ms=event.at_ms,
        recorder=records.CONSENT_RECORDER,
        role=common_pb2.ROLE_UNSPECIFIED,
        client=event.addressee,
        service=event.service,
        purpose=event.purpose,
        decision=common_pb2.ALLOW,
        reason_code=event.action,
        subject_commitment=crypto.commitment(salt, subject.encode()),
        visibility=common_pb2.NORMAL,
        kind=records.KIND_SUBJECT_REQUEST,
        note=event.kind,
        actor=event.actor,
    )
    opening = audit_pb2.RecordOpening(record_id=rid, subject=subject, subject_salt=salt)
    if text:
        text_salt = hmac.new(salt_key, _TEXT_SALT_CONTEXT + rid.encode(), hashlib.sha256).digest()
        record.request_commitment = crypto.commitment(text_salt, text.encode())
        opening.request_salt = text_salt
    return audit_pb2.OutboxItem(record=records.sign_access_record(record, signer), opening=opening)


class RequestAuditShipper(ConsentAuditShipper):
    """Moves request steps from the database to the audit log, in order, in the background
    (``poke()`` after every committed step)."""

    what = "request steps"

    def pending(self) -> int:
        """Steps not yet acknowledged by the audit log."""
        with self._engine.connect() as conn:
            return rstore.head_seq(conn) - rstore.shipped_seq(conn)

    def ship_once(self) -> bool:
        """Ship one batch after the cursor; True when a full batch went (there may be more).

        Raises:
            CdxError: the audit log is unreachable or refused a step (the cursor stays before
                it, so it is shipped again).
        """
        with self._engine.connect() as conn:
            after = rstore.shipped_seq(conn)
            events = rstore.events_after(conn, after, BATCH)
            rows = rstore.requests_by_id(conn, sorted({e.request_id for e in events}))
        if not events:
            return False
        items: list[audit_pb2.OutboxItem] = []
        for event in events:
            row = rows.get(event.request_id)
            if row is None:  # pragma: no cover - requests are never deleted
                raise errors.InternalError("a request step names no request")
            dossier = open_dossier(self._keys, row.id, row.dossier)
            texts = dossier["texts"]
            assert isinstance(texts, dict)
            text = str(texts.get(str(event.seq), ""))
            items.append(
                step_item(event, str(dossier["subject"]), text, self._signer, self._salt_key)
            )
        acknowledged = events[-1].seq
        results = self._client.ship(items)
        for event, result in zip(events, results):
            if result.error_code:
                self._advance_requests(after, event.seq - 1)
                raise errors.FailedPreconditionError(
                    f"the audit log refused request step {event.seq} ({result.error_code})"
                )
        self._advance_requests(after, acknowledged)
        return len(events) == BATCH

    def _advance_requests(self, after: int, seq: int) -> None:
        if seq <= after:
            return
        with self._writer.begin() as conn:
            rstore.advance_shipped(conn, seq)
