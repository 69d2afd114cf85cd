"""Ships every consent lifecycle event to the audit log (DESIGN §7: "itself logged").

The ``consent_events`` table is the outbox: it is append-only, so what has been shipped is
kept apart, in the one-row ``consent_audit_cursor`` (the last sequence number the audit log
acknowledged). A background thread reads the events after the cursor, turns each into a signed
``consent_event`` record with the subject's opening, appends them with ``AuditClient.ship``
over the consent service's mutual-TLS identity and moves the cursor past the acknowledged
prefix. When the log is down the events wait in the database and the thread backs off; nothing
is lost and nothing is logged twice: a record is a pure function of its event (record id from
the signing key id and the sequence number, salt keyed by the service's secret, Ed25519 is
deterministic), and the log treats an identical record id and leaf as a duplicate.

``used`` events are not shipped: a use is an exchange, and the security servers log it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.engine import Engine

from cdx import crypto, db, errors, records
from cdx.consentpolicy import ConsentTerms
from cdx.representation import public_actor
from cdx.v1 import audit_pb2, common_pb2
from consent import store
from consent.model import terms_of_row
from consent.sealing import DataKeys

log = logging.getLogger(__name__)

CONSENT_RECORDER = records.CONSENT_RECORDER
KIND_CONSENT_EVENT = records.KIND_CONSENT_EVENT
#: Events that are not lifecycle changes (a use is logged by the security servers).
NOT_SHIPPED = frozenset({"used"})
_RECORD_NAMESPACE = uuid.UUID("5b0f3c1e-8d2a-5c47-9a51-6f1d2e3c4b5a")
_SALT_CONTEXT = b"cdx/consent/audit-salt/v1\n"
BATCH = 200


class Shipper(Protocol):
    def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]: ...


def record_id(key_id: str, seq: int) -> str:
    """The deterministic record id of consent event ``seq`` signed under ``key_id``."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{key_id}/{seq}"))


def event_item(
    event: store.EventRow,
    terms: ConsentTerms,
    signer: crypto.Signer,
    salt_key: bytes,
) -> audit_pb2.OutboxItem:
    """The signed record and opening of one consent event (the same bytes on every call)."""
    subject = terms.subject.value
    rid = record_id(signer.key_id, event.seq)
    salt = hmac.new(salt_key, _SALT_CONTEXT + rid.encode(), hashlib.sha256).digest()
    record = audit_pb2.AccessRecord(
        record_id=rid,
        time_ms=event.at_ms,
        recorder=CONSENT_RECORDER,
        role=common_pb2.ROLE_UNSPECIFIED,
        client=event.grantee,
        service=event.services[0] if event.services else "",
        purpose=terms.purpose,
        lawful_basis=common_pb2.CONSENT,
        consent_id=event.consent_id,
        decision=common_pb2.ALLOW,
        reason_code=event.action,
        subject_commitment=crypto.commitment(salt, subject.encode()),
        visibility=common_pb2.NORMAL,
        kind=KIND_CONSENT_EVENT,
        note=event.action,
        # A representative is shown by the kind of relation only: a relation id in every
        # security server's copy of the log would link one person's consents across agencies.
        actor=public_actor(event.actor),
    )
    return audit_pb2.OutboxItem(
        record=records.sign_access_record(record, signer),
        opening=audit_pb2.RecordOpening(record_id=rid, subject=subject, subject_salt=salt),
    )


class ConsentAuditShipper:
    """Moves consent events from the database to the audit log, in order, in the background.

    ``poke()`` (wire it to the service's event hook) ships at once; otherwise the thread looks
    every ``interval`` seconds, and after a failure waits ``min_backoff`` doubling up to
    ``max_backoff``. ``data_keys`` open the stored terms (the subject's opening and the purpose
    come from them).
    """

    #: What waits, in the warning logged while the audit log is unreachable.
    what = "consent events"

    def __init__(
        self,
        engine: Engine,
        client: Shipper,
        signer: crypto.Signer,
        salt_key: bytes,
        data_keys: DataKeys,
        *,
        interval: float = 2.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._writer = db.writer(engine)
        self._client = client
        self._signer = signer
        self._salt_key = salt_key
        self._keys = data_keys
        self._interval = interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._on_close = on_close
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consent-audit", daemon=True)
        self._thread.start()

    def poke(self, *_: object) -> None:
        """Ship now (called after every committed event)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._on_close is not None:
            self._on_close()

    def pending(self) -> int:
        """Events not yet acknowledged by the audit log (``used`` events included)."""
        with self._engine.connect() as conn:
            return store.head_seq(conn) - store.shipped_seq(conn)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                more = self.ship_once()
                backoff = 0.0
                if more:
                    continue
                wait = self._interval
            except Exception as exc:  # the events stay in the database: retry later
                backoff = min(self._max_backoff, max(self._min_backoff, backoff * 2))
                # The message names the peer (the gRPC detail carries its address).
                why = (
                    f"{exc.code}: {exc.message}"
                    if isinstance(exc, errors.CdxError)
                    else type(exc).__name__
                )
                log.warning(
                    "%s wait for the audit log (%s); retry in %.1fs", self.what, why, backoff
                )
                wait = backoff
            self._wake.wait(wait)
            self._wake.clear()

    def ship_once(self) -> bool:
        """Ship one batch after the cursor; True when a full batch went (there may be more).

        Raises:
            CdxError: the audit log is unreachable or refused an event (the cursor stays
                before it, so it is shipped again).
        """
        with self._engine.connect() as conn:
            after = store.shipped_seq(conn)
            events = store.events_after(conn, after, BATCH)
            rows = store.consents_by_id(conn, sorted({e.consent_id for e in events}))
        if not events:
            return False
        items: list[audit_pb2.OutboxItem] = []
        seqs: list[int] = []
        for event in events:
            if event.action in NOT_SHIPPED:
                continue
            row = rows.get(event.consent_id)
            if row is None:  # pragma: no cover - consents are never deleted
                raise errors.InternalError("a consent event names no consent")
            terms = terms_of_row(row, self._keys)
            items.append(event_item(event, terms, self._signer, self._salt_key))
            seqs.append(event.seq)
        acknowledged = events[-1].seq
        if items:
            results = self._client.ship(items)
            for seq, result in zip(seqs, results):
                if result.error_code:
                    acknowledged = seq - 1
                    self._advance(after, acknowledged)
                    raise errors.FailedPreconditionError(
                        f"the audit log refused consent event {seq} ({result.error_code})"
                    )
        self._advance(after, acknowledged)
        return len(events) == BATCH

    def _advance(self, after: int, seq: int) -> None:
        if seq <= after:
            return
        with self._writer.begin() as conn:
            store.advance_shipped(conn, seq)
