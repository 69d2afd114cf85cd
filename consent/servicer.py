"""gRPC servicers of the consent service: authenticate the caller, map proto <-> domain, delegate.

Who may call what (DESIGN §5, §7):

- ``CitizenConsent``: a bearer token from an identity provider registered in global
  configuration (``cdx.jwks.TokenVerifier``; development IdPs are refused in production); only
  citizen tokens, and a citizen reaches only their own consents, or with ``acting_for`` those
  of a person they legally represent (the service checks the relation on every call).
- ``AgencyConsent``: a security server's auth certificate (registered, fingerprint pinned in
  global configuration, not revoked), acting for a subsystem it hosts; or an information
  system's client certificate (``urn:cdx:client:<subsystem>``) acting for itself.
- ``ConsentCheck``: a registered security server only, and only for services whose subsystem
  it hosts; the change feed carries only changes to consents for such services.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from cdx import errors, pki
from cdx.clock import Clock
from cdx.consentpolicy import ConsentAction, ConsentState, ConsentTerms
from cdx.globalconf import ServerInfo, VerifiedGlobalConf
from cdx.ids import CitizenId, ServiceId, SubsystemId
from cdx.jwks import TokenVerifier
from cdx.rpc import bearer_token, peer_certificate
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.model import ConsentEvent, ConsentRecord, from_ms, ms, parse_date
from consent.service import USED_ACTION, ConsentService
from consent.store import EventRow

log = logging.getLogger(__name__)

CLIENT_URI_PREFIX = "urn:cdx:client:"
MAX_CHECK_FIELDS = 256


# --- proto <-> domain ----------------------------------------------------------------------------


def state_to_proto(state: ConsentState) -> int:
    return int(consent_pb2.ConsentState.Value(state.value))


def state_from_proto(value: int) -> ConsentState:
    try:
        return ConsentState(consent_pb2.ConsentState.Name(value))
    except ValueError as exc:
        raise errors.InvalidArgumentError("unknown consent state") from exc


def terms_to_proto(terms: ConsentTerms) -> consent_pb2.ConsentTerms:
    return consent_pb2.ConsentTerms(
        subject=terms.subject.value,
        grantee=terms.grantee,
        services=list(terms.services),
        purpose=terms.purpose,
        fields=sorted(terms.fields),
        data_from=terms.data_from.isoformat() if terms.data_from else "",
        data_until=terms.data_until.isoformat() if terms.data_until else "",
        valid_from_ms=ms(terms.valid_from),
        valid_until_ms=ms(terms.valid_until),
        max_uses=terms.max_uses,
        retention_days=terms.retention_days,
    )


def terms_from_proto(
    msg: consent_pb2.ConsentTerms, *, subject: CitizenId, now: datetime
) -> ConsentTerms:
    """Domain terms from a request (``subject`` already parsed; validity 0 = from now).

    Raises:
        InvalidArgumentError: a missing end of validity or a malformed date.
    """
    if msg.valid_until_ms <= 0:
        raise errors.InvalidArgumentError("valid_until_ms is required")
    return ConsentTerms(
        subject=subject,
        grantee=msg.grantee,
        services=tuple(msg.services),
        purpose=msg.purpose,
        fields=frozenset(msg.fields),
        valid_from=from_ms(msg.valid_from_ms) if msg.valid_from_ms > 0 else now,
        valid_until=from_ms(msg.valid_until_ms),
        data_from=parse_date(msg.data_from),
        data_until=parse_date(msg.data_until),
        max_uses=msg.max_uses,
        retention_days=msg.retention_days,
    )


def consent_to_proto(record: ConsentRecord) -> consent_pb2.Consent:
    return consent_pb2.Consent(
        id=record.id,
        state=state_to_proto(record.state),  # type: ignore[arg-type]
        terms=terms_to_proto(record.terms),
        artefact=record.artefact,
        supersedes=record.supersedes,
        uses=record.uses,
        created_at_ms=ms(record.created_at),
        updated_at_ms=ms(record.updated_at),
        requested_by=record.requested_by,
        version=record.version,
    )


def event_to_proto(event: ConsentEvent) -> consent_pb2.ConsentEvent:
    return consent_pb2.ConsentEvent(
        seq=event.seq,
        consent_id=event.consent_id,
        action=event.action,
        state=state_to_proto(event.state),  # type: ignore[arg-type]
        at_ms=ms(event.at),
        actor=event.actor,
        subject_tag=event.subject_tag,
    )


def change_to_proto(row: EventRow) -> consent_pb2.ConsentChange:
    return consent_pb2.ConsentChange(
        seq=row.seq,
        consent_id=row.consent_id,
        # subject_tag stays empty: subscribers invalidate by consent and grantee, and a stable
        # tag would let every security server link one citizen's consents across agencies.
        grantee=row.grantee,
        state=state_to_proto(ConsentState(row.state)),  # type: ignore[arg-type]
        at_ms=row.at_ms,
        action=row.action,
    )


def _citizen_id(text: str, conf: VerifiedGlobalConf) -> CitizenId:
    return CitizenId.parse(text, conf.instance)


# --- caller authentication -----------------------------------------------------------------------


def citizen_of(
    token: str | None, conf: VerifiedGlobalConf, verifier: TokenVerifier, now: datetime
) -> CitizenId:
    """The citizen a relayed (or presented) ID token names.

    Raises:
        UnauthenticatedError: no token; TokenError (and subclasses): an invalid one.
        PermissionDeniedError: an inspector's token.
    """
    if not token:
        raise errors.UnauthenticatedError("a citizen token is required")
    claims = verifier.verify(token, conf, now=now)
    if claims.role != "citizen" or claims.subject is None:
        raise errors.PermissionDeniedError("only citizens manage consents")
    return claims.subject


def on_behalf(
    caller: CitizenId, acting_for: str, instance: str
) -> tuple[CitizenId, CitizenId | None]:
    """``(data subject, representative)`` of a call by ``caller`` with ``acting_for``: the
    caller themself (``None``) unless they name someone else, whom the service then checks
    they represent.

    Raises:
        InvalidCitizenIdError: ``acting_for`` is not a national id.
    """
    if not acting_for:
        return caller, None
    represented = CitizenId.parse(acting_for, instance)
    return (caller, None) if represented == caller else (represented, caller)


def _fresh_conf(service: ConsentService, clock: Clock) -> VerifiedGlobalConf:
    conf = service.conf()
    conf.check_fresh(clock())  # fail closed on an expired configuration (DESIGN §5)
    return conf


def authenticate_server(context: grpc.ServicerContext, conf: VerifiedGlobalConf) -> ServerInfo:
    """The registered security server behind the call's TLS certificate.

    Raises:
        UnauthenticatedError: no client certificate.
        PeerNotRegisteredError: not a registered server's current auth certificate, or revoked.
    """
    cert = peer_certificate(context)
    if cert is None:
        raise errors.UnauthenticatedError("a client certificate is required")
    try:
        server_id = str(pki.server_id_of(cert))
    except errors.CertificateError as exc:
        raise errors.PeerNotRegisteredError("not a security server certificate") from exc
    fingerprint = pki.fingerprint(cert)
    info = conf.servers.get(server_id)
    if (
        info is None
        or info.auth_fingerprint != fingerprint
        or conf.is_revoked(fingerprint, cert.serial_number)
    ):
        raise errors.PeerNotRegisteredError()
    return info


def _agency_subsystems(context: grpc.ServicerContext, conf: VerifiedGlobalConf) -> frozenset[str]:
    """Subsystems the caller may act for: a server's hosted ones, or a client cert's one."""
    cert = peer_certificate(context)
    if cert is None:
        raise errors.UnauthenticatedError("a client certificate is required")
    uris = pki.certificate_uris(cert)
    clients = [u for u in uris if u.startswith(CLIENT_URI_PREFIX)]
    if len(clients) == 1 and not any(u.startswith("urn:cdx:server:") for u in uris):
        fingerprint = pki.fingerprint(cert)
        if conf.is_revoked(fingerprint, cert.serial_number):
            raise errors.PeerNotRegisteredError()
        subsystem = clients[0][len(CLIENT_URI_PREFIX) :]
        try:
            sub = SubsystemId.parse(subsystem)
        except errors.InvalidIdentifierError as exc:
            raise errors.PeerNotRegisteredError() from exc
        member = conf.members.get(str(sub.member))
        if member is None or sub.code not in member.subsystems:
            raise errors.PeerNotRegisteredError("the subsystem is not registered")
        return frozenset({subsystem})
    return authenticate_server(context, conf).subsystems


# --- citizen API ---------------------------------------------------------------------------------

_ACTIONS = {
    "Approve": ConsentAction.APPROVE,
    "Reject": ConsentAction.REJECT,
    "Pause": ConsentAction.PAUSE,
    "Resume": ConsentAction.RESUME,
    "Revoke": ConsentAction.REVOKE,
}


class CitizenConsentServicer(consent_pb2_grpc.CitizenConsentServicer):  # type: ignore[misc]
    """Citizens see and change their own consents (bearer token)."""

    def __init__(
        self, service: ConsentService, clock: Clock, token_verifier: TokenVerifier | None = None
    ) -> None:
        self._service = service
        self._clock = clock
        self._tokens = token_verifier or TokenVerifier()

    def _citizen(self, context: grpc.ServicerContext) -> CitizenId:
        conf = _fresh_conf(self._service, self._clock)
        token = bearer_token(context)
        return citizen_of(token, conf, self._tokens, self._clock())

    def _caller(
        self, context: grpc.ServicerContext, acting_for: str
    ) -> tuple[CitizenId, CitizenId | None]:
        """Whose consents (the data subject) and who acts (``None``: the subject themself)."""
        caller = self._citizen(context)
        return on_behalf(caller, acting_for, self._service.conf().instance)

    def ListMyConsents(
        self, request: consent_pb2.ListMyConsentsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListConsentsResponse:
        subject, by = self._caller(context, request.acting_for)
        states = {state_from_proto(s) for s in request.states}
        records = self._service.list_mine(subject, states, by=by)
        return consent_pb2.ListConsentsResponse(consents=[consent_to_proto(r) for r in records])

    def _act(
        self, name: str, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        subject, by = self._caller(context, request.acting_for)
        record = self._service.act(subject, request.consent_id, _ACTIONS[name], by=by)
        return consent_to_proto(record)

    def Approve(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        return self._act("Approve", request, context)

    def Reject(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        return self._act("Reject", request, context)

    def Pause(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        return self._act("Pause", request, context)

    def Resume(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        return self._act("Resume", request, context)

    def Revoke(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        return self._act("Revoke", request, context)

    def Grant(
        self, request: consent_pb2.GrantRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        subject, by = self._caller(context, request.acting_for)
        if request.terms.subject and request.terms.subject != subject.value:
            raise errors.PermissionDeniedError("a citizen grants consent for themselves only")
        terms = terms_from_proto(request.terms, subject=subject, now=self._clock())
        return consent_to_proto(self._service.grant(subject, terms, by=by))

    def Amend(
        self, request: consent_pb2.AmendRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        subject, by = self._caller(context, request.acting_for)
        if request.terms.subject and request.terms.subject != subject.value:
            raise errors.InvalidArgumentError("an amendment keeps subject and grantee")
        terms = terms_from_proto(request.terms, subject=subject, now=self._clock())
        return consent_to_proto(self._service.amend(subject, request.consent_id, terms, by=by))

    def GetReceipt(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ConsentReceipt:
        subject, by = self._caller(context, request.acting_for)
        text, jws = self._service.receipt(subject, request.consent_id, by=by)
        return consent_pb2.ConsentReceipt(json=text, jws=jws)

    def ListEvents(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListEventsResponse:
        subject, by = self._caller(context, request.acting_for)
        events = self._service.events(subject, request.consent_id, by=by)
        return consent_pb2.ListEventsResponse(events=[event_to_proto(e) for e in events])


# --- agency API ----------------------------------------------------------------------------------


class AgencyConsentServicer(consent_pb2_grpc.AgencyConsentServicer):  # type: ignore[misc]
    """Agencies request consent and see the consents granted to them."""

    def __init__(self, service: ConsentService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    def RequestConsent(
        self, request: consent_pb2.RequestConsentRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        conf = _fresh_conf(self._service, self._clock)
        allowed = _agency_subsystems(context, conf)
        if request.requester not in allowed:
            raise errors.PermissionDeniedError("the caller does not act for this subsystem")
        subject = _citizen_id(request.terms.subject, conf)
        terms = terms_from_proto(request.terms, subject=subject, now=self._clock())
        return consent_to_proto(self._service.request_consent(request.requester, terms))

    def ListGranted(
        self, request: consent_pb2.ListGrantedRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListConsentsResponse:
        conf = _fresh_conf(self._service, self._clock)
        allowed = _agency_subsystems(context, conf)
        if request.grantee not in allowed:
            raise errors.PermissionDeniedError("the caller does not act for this subsystem")
        subject = _citizen_id(request.subject, conf) if request.subject else None
        records = self._service.list_granted(request.grantee, subject=subject)
        return consent_pb2.ListConsentsResponse(consents=[consent_to_proto(r) for r in records])

    def GetConsent(
        self, request: consent_pb2.ConsentActionRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Consent:
        conf = _fresh_conf(self._service, self._clock)
        allowed = _agency_subsystems(context, conf)
        return consent_to_proto(self._service.get_for_agency(allowed, request.consent_id))


# --- enforcement API -----------------------------------------------------------------------------


@dataclass
class FeedSettings:
    heartbeat_interval: float = 2.0


class ConsentCheckServicer(consent_pb2_grpc.ConsentCheckServicer):  # type: ignore[misc]
    """Provider security servers check consent and follow the change feed."""

    def __init__(
        self,
        service: ConsentService,
        clock: Clock,
        feed: FeedSettings | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self._service = service
        self._clock = clock
        self._feed = feed or FeedSettings()
        self._stopping = stopping or threading.Event()

    def CheckConsent(
        self, request: consent_pb2.CheckConsentRequest, context: grpc.ServicerContext
    ) -> consent_pb2.CheckConsentResponse:
        conf = _fresh_conf(self._service, self._clock)
        server = authenticate_server(context, conf)
        service = ServiceId.parse(request.service)
        SubsystemId.parse(request.client)
        if str(service.subsystem) not in server.subsystems:
            raise errors.PermissionDeniedError("the calling server does not host this service")
        if len(request.fields) > MAX_CHECK_FIELDS:
            raise errors.LimitExceededError("too many fields")
        subject = _citizen_id(request.subject, conf)
        try:
            allow, head = self._service.check(
                subject=subject,
                client=request.client,
                service=request.service,
                purpose=request.purpose,
                fields=list(request.fields),
                consent_id=request.consent_id or None,
                record_use=request.record_use,
                partial_fields=request.partial_fields,
            )
        except errors.ConsentDeniedError as denied:
            return consent_pb2.CheckConsentResponse(
                allowed=False,
                consent_id=getattr(denied, "consent_id", ""),
                deny_code=denied.code,
                version=getattr(denied, "feed_position", 0),
            )
        return consent_pb2.CheckConsentResponse(
            allowed=True,
            consent_id=allow.consent_id,
            allowed_fields=sorted(allow.allowed_fields),
            valid_until_ms=ms(allow.valid_until),
            version=head,
            limited=allow.limited,
        )

    def WatchChanges(
        self, request: consent_pb2.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[consent_pb2.ConsentChange]:
        conf = _fresh_conf(self._service, self._clock)
        server = authenticate_server(context, conf)
        hub = self._service.hub
        position = request.after_seq
        # Everything committed before this call must be sent before the first heartbeat
        # (the hub may still be a few milliseconds behind the table).
        committed = hub.committed_head()
        if (position == 0 and not request.resume) or position > committed:
            position = committed  # a new subscriber starts from now: its cache is empty anyway
        interval = self._feed.heartbeat_interval
        announced = False
        last_sent = time.monotonic()
        while context.is_active() and not self._stopping.is_set() and not hub.closed:
            events, head = hub.wait(position, interval if announced else 0.05)
            if events is None:  # fell behind the hub's buffer: catch up from the table
                events = hub.read_after(position)
            relevant = _relevant_for(self._service, server.id)
            for row in events:
                position = row.seq
                if relevant(row):
                    yield change_to_proto(row)
                    last_sent = time.monotonic()
            caught_up = position >= (head if announced else max(head, committed))
            if caught_up and (not announced or time.monotonic() - last_sent >= interval):
                # The first heartbeat tells the subscriber it has caught up; later ones keep
                # the stream alive and advance its position past changes it does not see.
                yield consent_pb2.ConsentChange(
                    seq=position, heartbeat=True, at_ms=ms(datetime.now(UTC))
                )
                announced = True
                last_sent = time.monotonic()


def _relevant_for(service: ConsentService, server_id: str) -> _Relevance:
    conf = service.conf()
    info = conf.servers.get(server_id)
    hosted = info.subsystems if info else frozenset()
    return _Relevance(hosted)


@dataclass(frozen=True)
class _Relevance:
    hosted: frozenset[str]

    def __call__(self, row: EventRow) -> bool:
        if row.action == USED_ACTION:
            return False  # a spent use changes no cached decision (counted consents are not cached)
        return any(s.split("/", 1)[0] in self.hosted for s in row.services)
