"""Data-subject requests: filing, each handler's queue and steps, overdue lists, access bundles.

ADR 0020. Callers are authenticated by the servicer; this layer authorises:

- a citizen sees and withdraws only their own requests (anyone else's is "not found");
- an agency sees and moves only requests addressed to one of the subsystems it acts for;
- inspectors move complaints (addressed to them), and see every overdue request without its
  subject or texts;
- the consent service itself completes access requests, from evidence it checks first.

Every step is one transaction that updates the request and appends a
``subject_request_events`` row; after the commit ``on_event`` is called (the composition root
wires it to the audit shipper, ``consent.request_audit``). What names or quotes the citizen is
sealed at rest (``consent.requests_store``). The rules (state machine, deadlines) are
``consent.requestpolicy``'s; the calendar (weekends, public holidays, time zone) is given.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import uuid6
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from audit import bundles
from cdx import crypto, db, errors
from cdx.clock import Clock, utcnow
from cdx.globalconf import VerifiedGlobalConf, subsystems_of
from cdx.ids import CitizenId, ServiceId, SubsystemId
from consent import requests_store as rstore
from consent import store
from consent.model import ConsentRecord, canonical_json, from_ms, iso, ms, subject_tag
from consent.request_audit import open_dossier, record_id
from consent.request_model import (
    AccessEvidence,
    RequestStep,
    SubjectRequest,
    consent_json,
    request_json,
)
from consent.requestpolicy import (
    DECREE_356,
    DeadlineRule,
    Deadlines,
    Handler,
    Party,
    RequestAction,
    RequestKind,
    RequestState,
    check_text,
    deadlines,
    extended,
    party_of,
    transition,
)
from consent.requests_store import BUNDLE, DOSSIER, RequestEventRow
from consent.sealing import PREFIX, DataKeys
from consent.workdays import WorkingCalendar

log = logging.getLogger(__name__)

CITIZEN_ACTOR = "citizen"
SYSTEM_ACTOR = "system"
#: A citizen's open requests are bounded: one person cannot fill an agency's queue.
MAX_OPEN_PER_SUBJECT = 50
MAX_LIST = 500
_PURPOSE_CHARS = 100

RequestHook = Callable[[RequestEventRow], None]
ConfSource = Callable[[], VerifiedGlobalConf]


class SubjectRequestService:
    """Data-subject requests over the consent database.

    ``signer`` is the consent service key (it signs access bundles; the audit shipper signs the
    steps with it); ``tag_key`` keys the subject tags; ``data_keys`` seal dossiers and bundles;
    ``calendar`` says which days are working days; ``clock`` is the only clock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        signer: crypto.Signer,
        tag_key: bytes,
        data_keys: DataKeys,
        conf: ConfSource,
        calendar: WorkingCalendar,
        clock: Clock = utcnow,
        on_event: RequestHook | None = None,
        issuer: str | None = None,
        rule: DeadlineRule = DECREE_356,
    ) -> None:
        self._engine = engine
        self._writer = db.writer(engine)
        self._signer = signer
        self._tag_key = tag_key
        self._keys = data_keys
        self._conf = conf
        self.calendar = calendar
        self._clock = clock
        self._on_event = on_event
        self._issuer = issuer
        self._rule = rule

    def issuer(self) -> str:
        return self._issuer or f"urn:cdx:{self._conf().instance}:consent"

    def conf(self) -> VerifiedGlobalConf:
        return self._conf()

    def now(self) -> datetime:
        return self._clock()

    # --- plumbing ------------------------------------------------------------------------------

    def _read(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self._engine.connect() as conn:
                return fn(conn)
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None

    def _write(self, fn: Callable[[Connection, datetime, list[RequestEventRow]], Any]) -> Any:
        steps: list[RequestEventRow] = []
        now = self._clock()
        try:
            with self._writer.begin() as conn:
                result = fn(conn, now, steps)
        except sa.exc.IntegrityError:
            raise errors.AlreadyExistsError("conflicting request change") from None
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None
        for step in steps:
            if self._on_event is not None:
                try:
                    self._on_event(step)
                except Exception:  # the hook must never undo or block a committed step
                    log.exception("request event hook failed (seq %d)", step.seq)
        return result

    def _tag(self, subject: CitizenId) -> str:
        return subject_tag(self._tag_key, subject)

    def _load_row(self, conn: Connection, request_id: str, *, for_update: bool = False) -> Any:
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 40 or "\x00" in request_id:
            return None  # names nothing (and PostgreSQL text cannot hold a NUL)
        return rstore.get_request(conn, request_id, for_update=for_update)

    def _view(self, row: Any, steps: Sequence[RequestEventRow], *, private: bool) -> SubjectRequest:
        """The request of a row; ``private`` opens the dossier (subject and texts)."""
        texts: Mapping[str, Any] = {}
        subject = None
        if private:
            dossier = open_dossier(self._keys, row.id, row.dossier)
            subject = CitizenId(str(dossier["subject"]))
            texts = dossier["texts"]  # type: ignore[assignment]
        key_id = self._signer.key_id
        return SubjectRequest(
            id=row.id,
            kind=RequestKind(row.kind),
            state=RequestState(row.state),
            addressee=row.addressee,
            purpose=row.purpose,
            service=row.service,
            received_at=from_ms(int(row.received_at_ms)),
            due=Deadlines(from_ms(int(row.acknowledge_by_ms)), from_ms(int(row.complete_by_ms))),
            extended=bool(row.extended),
            closed_at=from_ms(int(row.closed_at_ms)) if row.closed_at_ms else None,
            version=int(row.version),
            has_bundle=bool(row.bundle),
            subject=subject,
            steps=tuple(
                RequestStep(
                    seq=e.seq,
                    action=e.action,
                    state=RequestState(e.state),
                    at=from_ms(e.at_ms),
                    actor=e.actor,
                    text=str(texts.get(str(e.seq), "")),
                    record_id=record_id(key_id, e.seq),
                )
                for e in steps
            ),
        )

    def _views(self, conn: Connection, rows: Sequence[Any], *, private: bool) -> list[Any]:
        events = rstore.events_of(conn, [r.id for r in rows])
        return [self._view(r, events[r.id], private=private) for r in rows]

    def _one(self, conn: Connection, row: Any) -> SubjectRequest:
        return self._views(conn, [row], private=True)[0]  # type: ignore[no-any-return]

    def _step(
        self,
        conn: Connection,
        row: Any,
        action: RequestAction,
        actor: str,
        text: str,
        now: datetime,
        steps: list[RequestEventRow],
        **changes: Any,
    ) -> None:
        """Move ``row`` by ``action``: one event, and the row updated (version checked)."""
        new = transition(RequestState(row.state), action, extended=bool(row.extended))
        values: dict[str, Any] = {
            "state": new.value,
            "version": int(row.version) + 1,
            "updated_at_ms": ms(now),
            **changes,
        }
        if action is RequestAction.EXTEND:
            values["extended"] = True
            values["complete_by_ms"] = ms(
                extended(from_ms(int(row.complete_by_ms)), self.calendar, self._rule)
            )
        if new.final:
            values["closed_at_ms"] = ms(now)
        event = rstore.append_event(
            conn,
            {
                "request_id": row.id,
                "action": action.value,
                "state": new.value,
                "at_ms": ms(now),
                "actor": actor,
                "subject_tag": row.subject_tag,
                "kind": row.kind,
                "addressee": row.addressee,
                "purpose": row.purpose,
                "service": row.service,
                "version": values["version"],
            },
        )
        steps.append(event)
        if text:
            dossier = open_dossier(self._keys, row.id, row.dossier)
            dossier["texts"][str(event.seq)] = text  # type: ignore[index]
            values["dossier"] = self._keys.seal(row.id, DOSSIER, canonical_json(dossier))
        if not rstore.update_request(conn, row.id, int(row.version), values):
            raise errors.UnavailableError("the request changed concurrently; try again")

    # --- validation against global configuration ---------------------------------------------

    def _validate(
        self, kind: RequestKind, addressee: str, purpose: str, service: str
    ) -> tuple[str, str, str]:
        conf = self._conf()
        if kind.handler is not Handler.AGENCY:
            if addressee:
                raise errors.InvalidArgumentError(f"a {kind.value} request names no agency")
        else:
            if not addressee:
                raise errors.InvalidArgumentError(f"a {kind.value} request names the agency")
            sub = SubsystemId.parse(addressee)
            if addressee not in set(subsystems_of(conf, str(sub.member))):
                raise errors.NotFoundError("the agency is not a registered subsystem")
        if kind is RequestKind.ACCESS and (purpose or service):
            raise errors.InvalidArgumentError("an access request covers everything: no purpose")
        if kind.needs_purpose and not purpose:
            raise errors.InvalidArgumentError(f"a {kind.value} names the purpose it is about")
        if purpose and (len(purpose) > _PURPOSE_CHARS or purpose not in conf.purposes):
            raise errors.NotFoundError("the purpose is not in the purpose catalogue")
        if service:
            ServiceId.parse(service)
            if service not in conf.services:
                raise errors.UnknownServiceError()
        return addressee, purpose, service

    # --- citizens ------------------------------------------------------------------------------

    def file(
        self,
        subject: CitizenId,
        kind: RequestKind,
        *,
        addressee: str = "",
        purpose: str = "",
        service: str = "",
        details: str = "",
    ) -> SubjectRequest:
        """The citizen files a request: RECEIVED, with its deadlines.

        Raises:
            InvalidArgumentError (and subclasses), NotFoundError, UnknownServiceError: a
                missing or unknown agency, purpose or service, or details that are not text.
            ReasonRequiredError: a complaint or rectification without details.
            LimitExceededError: too many open requests, or details too long.
        """
        addressee, purpose, service = self._validate(kind, addressee, purpose, service)
        text = check_text(details, required=kind.needs_details, what="description")
        tag = self._tag(subject)

        def apply(conn: Connection, now: datetime, steps: list[RequestEventRow]) -> Any:
            if rstore.open_count(conn, tag) >= MAX_OPEN_PER_SUBJECT:
                raise errors.LimitExceededError(
                    f"at most {MAX_OPEN_PER_SUBJECT} open requests: wait for answers first"
                )
            request_id = str(uuid6.uuid7())
            due = deadlines(now, self.calendar, self._rule)
            dossier = {"subject": subject.value, "texts": {}}
            values = {
                "id": request_id,
                "subject_tag": tag,
                "kind": kind.value,
                "addressee": addressee,
                "state": transition(None, RequestAction.FILE).value,
                "purpose": purpose,
                "service": service,
                "dossier": self._keys.seal(request_id, DOSSIER, canonical_json(dossier)),
                "bundle": "",
                "extended": False,
                "received_at_ms": ms(now),
                "acknowledge_by_ms": ms(due.acknowledge_by),
                "complete_by_ms": ms(due.complete_by),
                "closed_at_ms": 0,
                "updated_at_ms": ms(now),
                "version": 1,
            }
            rstore.insert_request(conn, values)
            event = rstore.append_event(
                conn,
                {
                    "request_id": request_id,
                    "action": RequestAction.FILE.value,
                    "state": values["state"],
                    "at_ms": ms(now),
                    "actor": CITIZEN_ACTOR,
                    "subject_tag": tag,
                    "kind": kind.value,
                    "addressee": addressee,
                    "purpose": purpose,
                    "service": service,
                    "version": 1,
                },
            )
            steps.append(event)
            if text:
                dossier["texts"] = {str(event.seq): text}
                sealed = self._keys.seal(request_id, DOSSIER, canonical_json(dossier))
                rstore.update_request(conn, request_id, 1, {"dossier": sealed})
            return self._one(conn, rstore.get_request(conn, request_id))

        return self._write(apply)  # type: ignore[no-any-return]

    def _owned(
        self, conn: Connection, subject: CitizenId, request_id: str, *, for_update: bool = False
    ) -> Any:
        row = self._load_row(conn, request_id, for_update=for_update)
        if row is None or row.subject_tag != self._tag(subject):
            raise errors.NotFoundError("no such request")
        return row

    def list_mine(self, subject: CitizenId) -> list[SubjectRequest]:
        """The citizen's requests, newest first."""
        tag = self._tag(subject)
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._views(c, rstore.requests_of_subject(c, tag, MAX_LIST), private=True)
        )

    def get_mine(self, subject: CitizenId, request_id: str) -> SubjectRequest:
        """Raises ``NotFoundError``: no such request of this citizen."""
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._one(c, self._owned(c, subject, request_id))
        )

    def withdraw(self, subject: CitizenId, request_id: str) -> SubjectRequest:
        """The citizen withdraws an open request.

        Raises:
            NotFoundError: no such request of this citizen.
            InvalidTransitionError: it is already finished.
        """

        def apply(conn: Connection, now: datetime, steps: list[RequestEventRow]) -> Any:
            row = self._owned(conn, subject, request_id, for_update=True)
            self._step(conn, row, RequestAction.WITHDRAW, CITIZEN_ACTOR, "", now, steps)
            return self._one(conn, rstore.get_request(conn, request_id))

        return self._write(apply)  # type: ignore[no-any-return]

    def access_bundle(self, subject: CitizenId, request_id: str) -> bytes:
        """The signed bundle of one of the citizen's completed access requests.

        Raises:
            NotFoundError: no such request of this citizen, or no bundle (yet).
        """
        row = self._read(lambda c: self._owned(c, subject, request_id))
        if not row.bundle:
            raise errors.NotFoundError("this request has no access bundle")
        return self._keys.open(row.id, BUNDLE, row.bundle).encode()

    def complete_access(
        self, subject: CitizenId, request_id: str, evidence: AccessEvidence
    ) -> bytes:
        """Check the citizen's history, sign the access bundle and complete the request (the
        consent service acknowledges and completes it at once, the bundle's SHA-256 as its
        answer); returns the bundle file.

        Raises:
            NotFoundError: no such request of this citizen.
            FailedPreconditionError: not an access request, or not waiting for its bundle.
            VerificationError / ProofError / NoteSignatureError / MalformedError /
                LimitExceededError: the evidence does not check out.
        """
        self._read(lambda c: self._owned(c, subject, request_id))  # nobody else's: not found
        conf = self._conf()
        opened, proven = bundles.check_evidence(
            evidence.checkpoint_note, evidence.entries, bundles.trust_of(conf), subject.value
        )

        def apply(conn: Connection, now: datetime, steps: list[RequestEventRow]) -> bytes:
            row = self._owned(conn, subject, request_id, for_update=True)
            if row.kind != RequestKind.ACCESS.value:
                raise errors.FailedPreconditionError("not an access request")
            if row.state != RequestState.RECEIVED.value:
                raise errors.InvalidTransitionError("the access request is already answered")
            tag = self._tag(subject)
            mine = rstore.requests_of_subject(conn, tag, MAX_LIST)
            body = bundles.bundle_body(
                request_id=request_id,
                issued_at=iso(now),
                issuer=self.issuer(),
                instance=conf.instance,
                subject=subject.value,
                origin=opened.checkpoint.origin,
                checkpoint_note=evidence.checkpoint_note,
                tree_size=opened.size,
                entries=proven,
                entries_omitted=evidence.omitted,
                consents=self._consents_json(conn, tag),
                requests=[request_json(r) for r in self._views(conn, mine, private=True)],
            )
            file = bundles.signed_file(body, self._signer)
            digest = hashlib.sha256(bundles.canonical_json(body)).hexdigest()
            self._step(conn, row, RequestAction.ACKNOWLEDGE, SYSTEM_ACTOR, "", now, steps)
            row = rstore.get_request(conn, request_id)
            self._step(
                conn,
                row,
                RequestAction.COMPLETE,
                SYSTEM_ACTOR,
                f"access bundle sha256:{digest}",
                now,
                steps,
                bundle=self._keys.seal(request_id, BUNDLE, file.decode()),
            )
            return file

        return self._write(apply)  # type: ignore[no-any-return]

    def _consents_json(self, conn: Connection, tag: str) -> list[dict[str, Any]]:
        out = []
        for row in store.consents_of_subject(conn, tag):
            record = ConsentRecord.from_row(row, self._keys)
            out.append(consent_json(record, store.events_of(conn, record.id)))
        return out

    # --- agencies ------------------------------------------------------------------------------

    def _addressed(self, conn: Connection, allowed: Collection[str], request_id: str) -> Any:
        row = self._load_row(conn, request_id)
        if row is None or row.addressee not in allowed or not row.addressee:
            raise errors.NotFoundError("no such request")
        return row

    def queue(
        self,
        allowed: Collection[str],
        addressee: str,
        *,
        states: Collection[RequestState] = (),
        overdue_only: bool = False,
    ) -> list[SubjectRequest]:
        """Requests addressed to ``addressee`` (one of ``allowed``), open ones by default,
        the nearest deadline first.

        Raises:
            PermissionDeniedError: ``addressee`` is not one the caller acts for.
        """
        if addressee not in allowed:
            raise errors.PermissionDeniedError("the caller does not act for this subsystem")
        wanted = [s.value for s in (states or [s for s in RequestState if not s.final])]
        kinds = [k.value for k in RequestKind if k.handler is Handler.AGENCY]
        found = self._read(
            lambda c: self._views(
                c, rstore.requests_addressed(c, [addressee], kinds, wanted, MAX_LIST), private=True
            )
        )
        now = self._clock()
        return [r for r in found if not overdue_only or r.overdue(now)]

    def get_addressed(self, allowed: Collection[str], request_id: str) -> SubjectRequest:
        """Raises ``NotFoundError``: no such request addressed to one of ``allowed``."""
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._one(c, self._addressed(c, allowed, request_id))
        )

    def act_as_agency(
        self, allowed: Collection[str], request_id: str, action: RequestAction, text: str = ""
    ) -> SubjectRequest:
        """The addressed agency moves a request (acknowledge, start, extend, complete, refuse).

        Raises:
            NotFoundError: no such request addressed to one of ``allowed``.
            PermissionDeniedError: an action only the citizen takes.
            InvalidTransitionError: not allowed from the request's state, a second extension.
            ReasonRequiredError, LimitExceededError, UnsafeCharactersError: the text.
        """
        return self._act(
            lambda c: self._addressed(c, allowed, request_id), None, request_id, action, text
        )

    def _act(
        self,
        find: Callable[[Connection], Any],
        actor: str | None,
        request_id: str,
        action: RequestAction,
        text: str,
    ) -> SubjectRequest:
        if party_of(action) is not Party.HANDLER:
            raise errors.PermissionDeniedError("only the citizen takes this step")
        checked = check_text(text, required=action.needs_text, what="reason or answer")

        def apply(conn: Connection, now: datetime, steps: list[RequestEventRow]) -> Any:
            row: Any = rstore.get_request(conn, find(conn).id, for_update=True)  # lock it
            self._step(conn, row, action, actor or row.addressee, checked, now, steps)
            return self._one(conn, rstore.get_request(conn, request_id))

        return self._write(apply)  # type: ignore[no-any-return]

    # --- inspectors ----------------------------------------------------------------------------

    def overdue_list(self, limit: int = MAX_LIST) -> list[SubjectRequest]:
        """Every open request past a deadline (any addressee), without subject or texts."""
        now = self._clock()
        limit = max(1, min(limit or MAX_LIST, MAX_LIST))
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._views(c, rstore.overdue_requests(c, ms(now), limit), private=False)
        )

    def complaints(self, states: Collection[RequestState] = ()) -> list[SubjectRequest]:
        """Complaints to the inspectors (open ones by default), the nearest deadline first."""
        wanted = [s.value for s in (states or [s for s in RequestState if not s.final])]
        kinds = [RequestKind.COMPLAINT.value]
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._views(
                c, rstore.requests_addressed(c, [""], kinds, wanted, MAX_LIST), private=True
            )
        )

    def _complaint(self, conn: Connection, request_id: str) -> Any:
        row = self._load_row(conn, request_id)
        if row is None or row.kind != RequestKind.COMPLAINT.value:
            raise errors.NotFoundError("no such complaint")
        return row

    def get_complaint(self, request_id: str) -> SubjectRequest:
        """Raises ``NotFoundError``: no such complaint."""
        return self._read(  # type: ignore[no-any-return]
            lambda c: self._one(c, self._complaint(c, request_id))
        )

    def act_as_inspector(
        self, inspector: str, request_id: str, action: RequestAction, text: str = ""
    ) -> SubjectRequest:
        """An inspector moves a complaint (as ``act_as_agency`` for agencies).

        Raises:
            NotFoundError: no such complaint.
            PermissionDeniedError, InvalidTransitionError, ReasonRequiredError, ...: as
                ``act_as_agency``.
        """
        return self._act(
            lambda c: self._complaint(c, request_id), inspector, request_id, action, text
        )

    # --- key rotation --------------------------------------------------------------------------

    def reseal(self, batch: int = 200) -> int:
        """Reseal under the current data key every dossier and bundle a retired key sealed;
        returns how many requests changed. Not a step: no event.

        Raises:
            KeyStoreError: a value sealed under a key this service does not hold.
        """
        prefix = f"{PREFIX}.{self._keys.current_id}."
        done, after = 0, ""
        while True:

            def apply(
                conn: Connection, now: datetime, steps: list[RequestEventRow], after: str = after
            ) -> list[str]:
                rows = rstore.sealed_otherwise(conn, prefix, after, batch)
                for row in rows:
                    dossier = self._keys.seal(
                        row.id, DOSSIER, self._keys.open(row.id, DOSSIER, row.dossier)
                    )
                    bundle = row.bundle and self._keys.seal(
                        row.id, BUNDLE, self._keys.open(row.id, BUNDLE, row.bundle)
                    )
                    rstore.replace_sealed(conn, row.id, dossier, bundle)
                return [row.id for row in rows]

            ids: list[str] = self._write(apply)
            done += len(ids)
            if len(ids) < batch:
                return done
            after = ids[-1]


def _database_error(exc: sa.exc.SQLAlchemyError) -> errors.InternalError:
    # Statement parameters can hold sealed values and tags: log only the error's type.
    orig = getattr(exc, "orig", None)
    log.error(
        "request database error: %s (%s)", type(exc).__name__, type(orig).__name__ if orig else "-"
    )
    return errors.InternalError("consent database error")


__all__ = [
    "MAX_OPEN_PER_SUBJECT",
    "SubjectRequestService",
]
