"""The consent service: requests, grants, lifecycle changes, checks and the event log.

DESIGN §7. Callers are already authenticated by the servicer; this layer authorises:

- only the subject changes or sees a consent (a consent of someone else is "not found", so
  its existence does not leak), or their legal representative (``by``): a relation in force
  now that covers consents, read in the same transaction as the change
  (``consent.representation``); the event then names the relation as its actor
  (``representative:<kind>:<relation id>``), never the representative's national id;
- a minor (a relation of the authority gives them a majority date still ahead) does not grant,
  approve, resume or amend their own consents: their legal representative does
  (``minor_needs_representative``); rejecting, pausing and revoking stay open to them;
- an agency requests consent only for itself and sees only consents granted to it;
- ``check`` answers for any request the servicer let through (the servicer makes sure the
  calling security server hosts the service).

Every change is one transaction that updates the consent and appends a ``consent_events`` row
(append-only). After the commit the change hub is woken (security servers learn of it through
the change feed) and ``on_event`` is called: the composition root wires it to the audit log.
The evaluation itself is ``cdx.consentpolicy.evaluate`` (pure).

Terms and artefacts are stored sealed under the data keys (``consent.sealing``); the subject
is indexed only by its keyed tag. A check opens the terms of the subject's consents with the
grantee, never their artefacts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import uuid6
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from cdx import crypto, db, errors
from cdx.clock import Clock, utcnow
from cdx.consentpolicy import (
    Allow,
    ConsentAction,
    ConsentState,
    ConsentTerms,
    ConsentView,
    check_terms,
    evaluate,
    transition,
)
from cdx.globalconf import VerifiedGlobalConf, subsystems_of
from cdx.ids import CitizenId, SubsystemId
from cdx.representation import Scope, is_representative_actor
from consent import store
from consent.artefact import sign_artefact
from consent.feed import ChangeHub
from consent.model import (
    ConsentEvent,
    ConsentRecord,
    canonical_json,
    from_ms,
    ms,
    subject_tag,
    terms_of_row,
    terms_to_json,
)
from consent.receipt import build_receipt, sign_receipt
from consent.representation import RelationBook
from consent.sealing import ARTEFACT, PREFIX, TERMS, DataKeys

log = logging.getLogger(__name__)

CITIZEN_ACTOR = "citizen"
SYSTEM_ACTOR = "system"
USED_ACTION = "used"
MAX_LIST = 1000

EventHook = Callable[[ConsentEvent], None]
ConfSource = Callable[[], VerifiedGlobalConf]


class ConsentService:
    """Consent lifecycle and checks over one database (SQLite or PostgreSQL).

    ``signer`` holds the Ed25519 artefact key (its public key is ``consent_service_key`` in
    global configuration); ``tag_key`` keys the subject tags; ``data_keys`` seal the stored
    terms and artefacts; ``conf`` returns the current verified global configuration;
    ``clock`` is the only clock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        signer: crypto.Signer,
        tag_key: bytes,
        data_keys: DataKeys,
        conf: ConfSource,
        clock: Clock = utcnow,
        on_event: EventHook | None = None,
        issuer: str | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        if len(tag_key) < 32:
            raise errors.InvalidArgumentError("the subject tag key must be at least 32 bytes")
        self._engine = engine
        self._writer = db.writer(engine)
        self._signer = signer
        self._tag_key = tag_key
        self._keys = data_keys
        self._conf = conf
        self._clock = clock
        self._on_event = on_event
        self._issuer = issuer
        self.hub = ChangeHub(engine, poll_interval=poll_interval)
        #: The legal representatives (docs/adr/0018), over the same database and keys.
        self.relations = RelationBook(
            engine, tag_key=tag_key, data_keys=data_keys, conf=conf, clock=clock
        )

    def close(self) -> None:
        self.hub.close()

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    def issuer(self) -> str:
        return self._issuer or f"urn:cdx:{self._conf().instance}:consent"

    def conf(self) -> VerifiedGlobalConf:
        return self._conf()

    def tag(self, subject: CitizenId) -> str:
        return subject_tag(self._tag_key, subject)

    # --- plumbing ------------------------------------------------------------------------------

    def _read(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self._engine.connect() as conn:
                return fn(conn)
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None

    def _write(self, fn: Callable[[Connection, datetime], Any]) -> tuple[Any, list[ConsentEvent]]:
        events: list[ConsentEvent] = []
        now = self._clock()
        try:
            with self._writer.begin() as conn:
                conn.info["cdx_events"] = events
                try:
                    result = fn(conn, now)
                finally:
                    conn.info.pop("cdx_events", None)
        except sa.exc.IntegrityError:
            raise errors.AlreadyExistsError("conflicting consent change") from None
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None
        self._published(events)
        return result, events

    def _published(self, events: Sequence[ConsentEvent]) -> None:
        if not events:
            return
        self.hub.poke()
        if self._on_event is None:
            return
        for event in events:
            try:
                self._on_event(event)
            except Exception:  # the hook must never undo or block a committed change
                log.exception("consent event hook failed (seq %d)", event.seq)

    def _append(
        self, conn: Connection, record: ConsentRecord, action: str, actor: str, now: datetime
    ) -> ConsentEvent:
        if actor not in (CITIZEN_ACTOR, SYSTEM_ACTOR, record.terms.grantee) and not (
            _relation_actor(actor)
        ):
            # Events are append-only: a person's id written there could never be removed. A
            # representative is named by the relation (a random id), never by their id; an
            # agency by the consent's own grantee (checked registered when the consent was
            # made) or a subsystem global configuration registers now (the grammar alone would
            # let "VN:GOV:BCA:<national id>" through).
            member = str(SubsystemId.parse(actor).member)
            if actor not in set(subsystems_of(self._conf(), member)):
                raise errors.InvalidArgumentError(
                    "an event's actor is citizen, system, a registered subsystem or a relation"
                )
        row = store.append_event(
            conn,
            {
                "consent_id": record.id,
                "action": action,
                "state": record.state.value,
                "at_ms": ms(now),
                "actor": actor,
                "subject_tag": self.tag(record.terms.subject),
                "grantee": record.terms.grantee,
                "services": " ".join(record.terms.services),
                "version": record.version,
            },
        )
        event = ConsentEvent(
            seq=row.seq,
            consent_id=row.consent_id,
            action=row.action,
            state=record.state,
            at=now,
            actor=actor,
            subject_tag=row.subject_tag,
            grantee=row.grantee,
            services=row.services,
            version=row.version,
        )
        conn.info["cdx_events"].append(event)
        return event

    def _insert(
        self,
        conn: Connection,
        terms: ConsentTerms,
        state: ConsentState,
        *,
        now: datetime,
        requested_by: str = "",
        supersedes: str = "",
    ) -> ConsentRecord:
        consent_id = str(uuid6.uuid7())
        artefact = ""
        if state is ConsentState.ACTIVE:
            artefact = self._artefact(terms, consent_id, now, supersedes)
        record = ConsentRecord(
            id=consent_id,
            state=state,
            terms=terms,
            artefact=artefact,
            supersedes=supersedes,
            requested_by=requested_by,
            uses=0,
            version=1,
            created_at=now,
            updated_at=now,
        )
        store.insert_consent(
            conn,
            {
                "id": consent_id,
                "subject_tag": self.tag(terms.subject),
                "grantee": terms.grantee,
                "state": state.value,
                "terms": self._keys.seal(consent_id, TERMS, canonical_json(terms_to_json(terms))),
                "artefact": self._keys.seal(consent_id, ARTEFACT, artefact) if artefact else "",
                "supersedes": supersedes,
                "requested_by": requested_by,
                "uses": 0,
                "max_uses": terms.max_uses,
                "version": 1,
                "valid_until_ms": ms(terms.valid_until),
                "created_at_ms": ms(now),
                "updated_at_ms": ms(now),
            },
        )
        return record

    def _artefact(
        self, terms: ConsentTerms, consent_id: str, now: datetime, supersedes: str
    ) -> str:
        return sign_artefact(
            self._signer,
            terms,
            consent_id=consent_id,
            issuer=self.issuer(),
            issued_at=now,
            supersedes=supersedes,
        )

    def _update(
        self, conn: Connection, record: ConsentRecord, now: datetime, **changes: Any
    ) -> ConsentRecord:
        updated = replace(record, version=record.version + 1, updated_at=now, **changes)
        values: dict[str, Any] = {
            "state": updated.state.value,
            "uses": updated.uses,
            "version": updated.version,
            "updated_at_ms": ms(now),
        }
        if updated.artefact != record.artefact:  # sealed afresh only when it changes
            values["artefact"] = self._keys.seal(record.id, ARTEFACT, updated.artefact)
        if not store.update_consent(conn, record.id, record.version, values):
            raise errors.UnavailableError("the consent changed concurrently; try again")
        return updated

    def _change_state(
        self,
        conn: Connection,
        record: ConsentRecord,
        action: ConsentAction,
        actor: str,
        now: datetime,
    ) -> ConsentRecord:
        new_state = transition(record.state, action)
        changes: dict[str, Any] = {"state": new_state}
        if action is ConsentAction.APPROVE:
            changes["artefact"] = self._artefact(record.terms, record.id, now, record.supersedes)
        updated = self._update(conn, record, now, **changes)
        self._append(conn, updated, action.value, actor, now)
        return updated

    def _load(
        self, conn: Connection, consent_id: str, *, for_update: bool = False
    ) -> ConsentRecord | None:
        if not isinstance(consent_id, str) or not 0 < len(consent_id) <= 40 or "\x00" in consent_id:
            return None  # (PostgreSQL text cannot hold a NUL: such an id names nothing)
        row = store.get_consent(conn, consent_id, for_update=for_update)
        return ConsentRecord.from_row(row, self._keys) if row is not None else None

    def _acting(
        self,
        conn: Connection,
        subject: CitizenId,
        by: CitizenId | None,
        now: datetime,
        *,
        authorises: bool = False,
    ) -> str:
        """The actor of a citizen-side call on ``subject``'s consents made by ``by`` (``None``:
        by the subject), checked now, inside the call's transaction.

        Raises:
            RepresentationDeniedError (subclasses): ``by`` may not act for ``subject`` now.
            MinorNeedsRepresentativeError: a minor ``authorises`` processing on their own.
        """
        if by is not None and by != subject:
            grant = self.relations.grant_in(conn, by, subject, Scope.CONSENTS, now)
            return grant.actor
        if authorises:
            until = self.relations.minor_until_in(conn, subject)
            if until is not None and now < until:
                raise errors.MinorNeedsRepresentativeError()
        return CITIZEN_ACTOR

    def _owned(
        self, conn: Connection, subject: CitizenId, consent_id: str, *, for_update: bool = False
    ) -> ConsentRecord:
        record = self._load(conn, consent_id, for_update=for_update)
        if record is None or record.terms.subject != subject:
            raise errors.NotFoundError("no such consent")
        return record

    # --- validation against global configuration ---------------------------------------------

    def _validate(self, terms: ConsentTerms, now: datetime) -> ConsentTerms:
        checked = check_terms(terms, now=now)
        conf = self._conf()
        grantee = SubsystemId.parse(checked.grantee)
        if checked.grantee not in set(subsystems_of(conf, str(grantee.member))):
            raise errors.NotFoundError("the grantee is not a registered subsystem")
        offered: set[str] = set()
        for service in checked.services:
            info = conf.services.get(service)
            if info is None:
                raise errors.UnknownServiceError()
            offered.update(info.fields)
            if not any(
                a.purpose == checked.purpose and a.lawful_basis == "CONSENT"
                for a in conf.agreements_for(checked.grantee, service)
            ):
                raise errors.FailedPreconditionError(
                    "no consent-based agreement covers this grantee, service and purpose"
                )
        if not checked.fields <= offered:
            raise errors.InvalidArgumentError("a field is not offered by the consented services")
        return checked

    # --- agencies ------------------------------------------------------------------------------

    def request_consent(self, requester: str, terms: ConsentTerms) -> ConsentRecord:
        """An agency asks the citizen for consent: a PENDING consent the citizen approves.

        Raises:
            PermissionDeniedError: the requester asks on behalf of another subsystem.
            InvalidArgumentError, LimitExceededError, UnknownServiceError, NotFoundError,
            FailedPreconditionError: the terms are invalid or no agreement could use them.
        """
        if terms.grantee != requester:
            raise errors.PermissionDeniedError("an agency requests consent for itself only")

        def apply(conn: Connection, now: datetime) -> ConsentRecord:
            checked = self._validate(terms, now)
            state = transition(None, ConsentAction.REQUEST)
            record = self._insert(conn, checked, state, now=now, requested_by=requester)
            self._append(conn, record, ConsentAction.REQUEST.value, requester, now)
            return record

        record, _ = self._write(apply)
        return record  # type: ignore[no-any-return]

    def list_granted(
        self, grantee: str, *, subject: CitizenId | None = None, limit: int = MAX_LIST
    ) -> list[ConsentRecord]:
        """Consents granted to (or requested by) ``grantee``, newest first."""
        tag = self.tag(subject) if subject is not None else None
        rows = self._read(
            lambda c: store.consents_of_grantee(c, grantee, subject_tag=tag, limit=limit)
        )
        return [ConsentRecord.from_row(r, self._keys) for r in rows]

    def get_for_agency(self, grantees: Collection[str], consent_id: str) -> ConsentRecord:
        """One consent, if it was granted to one of ``grantees``.

        Raises:
            NotFoundError: no such consent, or granted to someone else.
        """
        record = self._read(lambda c: self._load(c, consent_id))
        if record is None or record.terms.grantee not in grantees:
            raise errors.NotFoundError("no such consent")
        return record  # type: ignore[no-any-return]

    # --- citizens ------------------------------------------------------------------------------

    def grant(
        self,
        subject: CitizenId,
        terms: ConsentTerms,
        actor: str = CITIZEN_ACTOR,
        *,
        by: CitizenId | None = None,
    ) -> ConsentRecord:
        """The citizen (or, ``by``, their legal representative) grants consent directly:
        ACTIVE at once, with its artefact.

        Raises:
            PermissionDeniedError: the terms name another subject.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
            MinorNeedsRepresentativeError: the subject is a minor acting on their own.
            InvalidArgumentError, ...: as ``request_consent``.
        """
        if terms.subject != subject:
            raise errors.PermissionDeniedError("a citizen grants consent for themselves only")

        def apply(conn: Connection, now: datetime) -> ConsentRecord:
            nonlocal actor
            if by is not None or actor == CITIZEN_ACTOR:
                actor = self._acting(conn, subject, by, now, authorises=True)
            checked = self._validate(terms, now)
            state = transition(None, ConsentAction.GRANT)
            record = self._insert(conn, checked, state, now=now)
            self._append(conn, record, ConsentAction.GRANT.value, actor, now)
            return record

        record, _ = self._write(apply)
        return record  # type: ignore[no-any-return]

    def act(
        self,
        subject: CitizenId,
        consent_id: str,
        action: ConsentAction,
        actor: str = CITIZEN_ACTOR,
        *,
        by: CitizenId | None = None,
    ) -> ConsentRecord:
        """Approve, reject, pause, resume or revoke one of the subject's consents (``by``:
        their legal representative does).

        A consent whose validity has ended is first marked EXPIRED (that change is kept), and
        the requested action is then refused.

        Raises:
            NotFoundError: no such consent of this subject.
            InvalidTransitionError: the action is not allowed in the consent's state.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
            MinorNeedsRepresentativeError: a minor approves or resumes on their own.
        """
        if action not in _CITIZEN_ACTIONS:
            raise errors.InvalidArgumentError("not a citizen action")

        def apply(conn: Connection, now: datetime) -> ConsentRecord | None:
            nonlocal actor
            if by is not None or actor == CITIZEN_ACTOR:
                actor = self._acting(
                    conn, subject, by, now, authorises=action in _AUTHORISING_ACTIONS
                )
            record = self._owned(conn, subject, consent_id, for_update=True)
            if not record.state.final and now >= record.terms.valid_until:
                self._change_state(conn, record, ConsentAction.EXPIRE, SYSTEM_ACTOR, now)
                return None
            return self._change_state(conn, record, action, actor, now)

        record, _ = self._write(apply)
        if record is None:
            raise errors.InvalidTransitionError("the consent has expired")
        return record  # type: ignore[no-any-return]

    def amend(
        self,
        subject: CitizenId,
        consent_id: str,
        terms: ConsentTerms,
        actor: str = CITIZEN_ACTOR,
        *,
        by: CitizenId | None = None,
    ) -> ConsentRecord:
        """Change the terms: a new ACTIVE consent with a new artefact supersedes the old one.

        Raises:
            NotFoundError: no such consent of this subject.
            InvalidTransitionError: the old consent is not active or paused.
            InvalidArgumentError: the new terms change the subject or the grantee, or are
                invalid.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
            MinorNeedsRepresentativeError: the subject is a minor acting on their own.
        """

        def apply(conn: Connection, now: datetime) -> ConsentRecord:
            nonlocal actor
            if by is not None or actor == CITIZEN_ACTOR:
                actor = self._acting(conn, subject, by, now, authorises=True)
            old = self._owned(conn, subject, consent_id, for_update=True)
            if terms.subject != subject or terms.grantee != old.terms.grantee:
                raise errors.InvalidArgumentError("an amendment keeps subject and grantee")
            checked = self._validate(terms, now)
            self._change_state(conn, old, ConsentAction.SUPERSEDE, actor, now)
            state = transition(None, ConsentAction.GRANT)
            record = self._insert(
                conn, checked, state, now=now, requested_by=old.requested_by, supersedes=old.id
            )
            self._append(conn, record, ConsentAction.GRANT.value, actor, now)
            return record

        record, _ = self._write(apply)
        return record  # type: ignore[no-any-return]

    def list_mine(
        self,
        subject: CitizenId,
        states: Collection[ConsentState] = (),
        *,
        by: CitizenId | None = None,
    ) -> list[ConsentRecord]:
        """The subject's consents (all states, or only ``states``), oldest first.

        Raises:
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
        """

        def read(conn: Connection) -> Sequence[Any]:
            self._acting(conn, subject, by, self._clock())
            return store.consents_of_subject(conn, self.tag(subject))

        rows = self._read(read)
        records = [ConsentRecord.from_row(r, self._keys) for r in rows]
        return [r for r in records if not states or r.state in states]

    def get_mine(
        self, subject: CitizenId, consent_id: str, *, by: CitizenId | None = None
    ) -> ConsentRecord:
        """One of the subject's consents.

        Raises:
            NotFoundError: no such consent of this subject.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
        """

        def read(conn: Connection) -> ConsentRecord:
            self._acting(conn, subject, by, self._clock())
            return self._owned(conn, subject, consent_id)

        return self._read(read)  # type: ignore[no-any-return]

    def events(
        self, subject: CitizenId, consent_id: str, *, by: CitizenId | None = None
    ) -> list[ConsentEvent]:
        """The event history of one of the subject's consents.

        Raises:
            NotFoundError: no such consent of this subject.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
        """

        def read(conn: Connection) -> list[ConsentEvent]:
            self._acting(conn, subject, by, self._clock())
            self._owned(conn, subject, consent_id)
            return [_event(r) for r in store.events_of(conn, consent_id)]

        return self._read(read)  # type: ignore[no-any-return]

    def receipt(
        self, subject: CitizenId, consent_id: str, *, by: CitizenId | None = None
    ) -> tuple[str, str]:
        """A signed ISO/IEC TS 27560 consent receipt: ``(json, compact JWS of the json)``.

        Raises:
            NotFoundError: no such consent of this subject.
            RepresentationDeniedError (subclasses): ``by`` may not act for the subject.
        """

        def read(conn: Connection) -> tuple[ConsentRecord, list[ConsentEvent]]:
            self._acting(conn, subject, by, self._clock())
            record = self._owned(conn, subject, consent_id)
            return record, [_event(r) for r in store.events_of(conn, consent_id)]

        record, events = self._read(read)
        body = build_receipt(record, events, self._conf(), now=self._clock(), issuer=self.issuer())
        return sign_receipt(self._signer, body)

    # --- enforcement ---------------------------------------------------------------------------

    def check(
        self,
        *,
        subject: CitizenId,
        client: str,
        service: str,
        purpose: str,
        fields: Collection[str],
        consent_id: str | None = None,
        record_use: bool = False,
        partial_fields: bool = False,
    ) -> tuple[Allow, int]:
        """Decide one request; returns the ``Allow`` and the feed position it was taken at.

        With ``record_use``, an allowed request under a consent that counts uses spends one
        use, atomically (two providers can never both spend the last one).

        The feed position is the newest event committed before the consents were read: every
        change up to it is reflected in the decision (a cache may keep the decision across
        those changes, and must drop it for any later one that affects it).

        Raises:
            ConsentDeniedError (or subclass): as ``cdx.consentpolicy.evaluate``; its
                ``feed_position`` attribute is the position the denial was decided at.
        """
        tag = self.tag(subject)

        def decide(conn: Connection, for_update: bool = False) -> tuple[Allow, int]:
            head = store.head_seq(conn)
            rows = store.consents_of_subject(conn, tag, grantee=client, for_update=for_update)
            views = [
                ConsentView(r.id, ConsentState(r.state), terms_of_row(r, self._keys), int(r.uses))
                for r in rows
            ]
            try:
                allow = evaluate(
                    views,
                    subject=subject,
                    client=client,
                    service=service,
                    purpose=purpose,
                    fields=fields,
                    now=self._clock(),
                    consent_id=consent_id,
                    partial=partial_fields,
                )
            except errors.ConsentDeniedError as denied:
                denied.feed_position = head  # type: ignore[attr-defined]
                raise
            return allow, head

        allow, head = self._read(decide)
        if not (record_use and allow.limited):
            return allow, head

        def spend(conn: Connection, now: datetime) -> tuple[Allow, int]:
            allow, _ = decide(conn, for_update=True)  # decide again, holding the rows
            if allow.limited:
                record = self._load(conn, allow.consent_id)
                if record is None:  # pragma: no cover - deleted rows do not exist
                    raise errors.ConsentDeniedError()
                updated = self._update(conn, record, now, uses=record.uses + 1)
                self._append(conn, updated, USED_ACTION, client, now)
            return allow, store.head_seq(conn)

        result, _ = self._write(spend)
        return result  # type: ignore[no-any-return]

    def reseal(self, batch: int = 200) -> int:
        """Reseal under the current data key every stored value a retired key sealed (after
        a rotation), legal representation relations included; returns how many consents and
        relations changed. Not a consent change: no event.

        Raises:
            KeyStoreError: a value sealed under a key this service does not hold.
        """
        prefix = f"{PREFIX}.{self._keys.current_id}."
        done = 0
        after = ""
        while True:

            def apply(conn: Connection, now: datetime, after: str = after) -> list[str]:
                rows = store.consents_sealed_otherwise(conn, prefix, after, batch)
                for row in rows:
                    terms = self._keys.seal(
                        row.id, TERMS, self._keys.open(row.id, TERMS, row.terms)
                    )
                    artefact = row.artefact and self._keys.seal(
                        row.id, ARTEFACT, self._keys.open(row.id, ARTEFACT, row.artefact)
                    )
                    store.replace_sealed(conn, row.id, terms, artefact)
                return [row.id for row in rows]

            ids, _ = self._write(apply)
            done += len(ids)
            if len(ids) < batch:
                return done + self.relations.reseal(batch)
            after = ids[-1]

    def expire_due(self, limit: int = 100) -> int:
        """Mark consents whose validity has ended EXPIRED (one event each); returns how many."""
        now = self._clock()
        states = [ConsentState.PENDING.value, ConsentState.ACTIVE.value, ConsentState.PAUSED.value]
        due = self._read(lambda c: store.due_for_expiry(c, ms(now), states, limit))
        done = 0
        for consent_id in due:

            def apply(conn: Connection, now: datetime, consent_id: str = consent_id) -> bool:
                record = self._load(conn, consent_id, for_update=True)
                if record is None or record.state.final or now < record.terms.valid_until:
                    return False
                self._change_state(conn, record, ConsentAction.EXPIRE, SYSTEM_ACTOR, now)
                return True

            changed, _ = self._write(apply)
            done += int(bool(changed))
        return done


def _database_error(exc: sa.exc.SQLAlchemyError) -> errors.InternalError:
    # SQLAlchemy's messages carry the statement's parameters (stored terms hold national ids):
    # log only the error's type, and drop the chain so no traceback repeats them.
    orig = getattr(exc, "orig", None)
    log.error(
        "consent database error: %s (%s)", type(exc).__name__, type(orig).__name__ if orig else "-"
    )
    return errors.InternalError("consent database error")


_CITIZEN_ACTIONS = frozenset(
    {
        ConsentAction.APPROVE,
        ConsentAction.REJECT,
        ConsentAction.PAUSE,
        ConsentAction.RESUME,
        ConsentAction.REVOKE,
    }
)


#: Actions that let data be processed: a minor does not take them on their own.
_AUTHORISING_ACTIONS = frozenset({ConsentAction.APPROVE, ConsentAction.RESUME})


def _relation_actor(actor: str) -> bool:
    """A representative named by their relation (``representative:<kind>:<relation id>``)."""
    return is_representative_actor(actor) and actor.count(":") == 2


def _event(row: store.EventRow) -> ConsentEvent:
    return ConsentEvent(
        seq=row.seq,
        consent_id=row.consent_id,
        action=row.action,
        state=ConsentState(row.state),
        at=from_ms(row.at_ms),
        actor=row.actor,
        subject_tag=row.subject_tag,
        grantee=row.grantee,
        services=row.services,
        version=row.version,
    )
