"""gRPC servicers of data-subject requests: authenticate the caller, map proto <-> domain, delegate.

Who may call what (ADR 0020):

- ``CitizenRequests``: a citizen's bearer token (as ``CitizenConsent``); a citizen reaches
  only their own requests;
- ``AgencyRequests``: an information system's client certificate (``urn:cdx:client:<subsystem>``)
  acting for its subsystem, or a security server's auth certificate acting for the subsystems it
  hosts (as ``AgencyConsent``); an agency reaches only the requests addressed to them;
- ``InspectorRequests``: an inspector certificate (``urn:cdx:inspector:<name>``, not revoked),
  or a token with role ``inspector`` relayed by the portal (``urn:cdx:service:portal``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import grpc

from audit import bundles
from cdx import errors, pki
from cdx.clock import Clock
from cdx.globalconf import VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.jwks import TokenVerifier
from cdx.rpc import bearer_token, peer_certificate
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.model import ms
from consent.request_model import AccessEvidence, SubjectRequest
from consent.requestpolicy import RequestAction, RequestKind, RequestState
from consent.requests import SubjectRequestService
from consent.servicer import _agency_subsystems

INSPECTOR_URI_PREFIX = "urn:cdx:inspector:"
#: Peers that may relay an inspector's token (the portal).
TOKEN_RELAYS = frozenset({"urn:cdx:service:portal"})
_PSEUDONYM_CONTEXT = b"cdx/consent/inspector-pseudonym/v1\n"

_KINDS: dict[int, RequestKind] = {
    consent_pb2.REQUEST_ACCESS: RequestKind.ACCESS,
    consent_pb2.REQUEST_OBJECTION: RequestKind.OBJECTION,
    consent_pb2.REQUEST_RESTRICTION: RequestKind.RESTRICTION,
    consent_pb2.REQUEST_ERASURE: RequestKind.ERASURE,
    consent_pb2.REQUEST_RECTIFICATION: RequestKind.RECTIFICATION,
    consent_pb2.REQUEST_COMPLAINT: RequestKind.COMPLAINT,
}
_KIND_PB = {v: k for k, v in _KINDS.items()}
_ACTIONS: dict[int, RequestAction] = {
    consent_pb2.REQUEST_ACKNOWLEDGE: RequestAction.ACKNOWLEDGE,
    consent_pb2.REQUEST_START: RequestAction.START,
    consent_pb2.REQUEST_EXTEND: RequestAction.EXTEND,
    consent_pb2.REQUEST_COMPLETE: RequestAction.COMPLETE,
    consent_pb2.REQUEST_REFUSE: RequestAction.REFUSE,
}


# --- proto <-> domain ----------------------------------------------------------------------------


def state_to_proto(state: RequestState) -> int:
    return int(consent_pb2.SubjectRequestState.Value(f"REQUEST_{state.value}"))


def state_from_proto(value: int) -> RequestState:
    try:
        return RequestState(consent_pb2.SubjectRequestState.Name(value).removeprefix("REQUEST_"))
    except ValueError as exc:
        raise errors.InvalidArgumentError("unknown request state") from exc


def kind_from_proto(value: int) -> RequestKind:
    kind = _KINDS.get(value)
    if kind is None:
        raise errors.InvalidArgumentError("unknown request kind")
    return kind


def action_from_proto(value: int) -> RequestAction:
    action = _ACTIONS.get(value)
    if action is None:
        raise errors.InvalidArgumentError("unknown request action")
    return action


def request_to_proto(request: SubjectRequest, now: datetime) -> consent_pb2.SubjectRequest:
    return consent_pb2.SubjectRequest(
        id=request.id,
        kind=_KIND_PB[request.kind],  # type: ignore[arg-type]
        state=state_to_proto(request.state),  # type: ignore[arg-type]
        addressee=request.addressee,
        purpose=request.purpose,
        service=request.service,
        subject=request.subject.value if request.subject is not None else "",
        received_at_ms=ms(request.received_at),
        acknowledge_by_ms=ms(request.due.acknowledge_by),
        complete_by_ms=ms(request.due.complete_by),
        extended=request.extended,
        closed_at_ms=ms(request.closed_at) if request.closed_at else 0,
        overdue=request.overdue(now) or "",
        version=request.version,
        steps=[
            consent_pb2.SubjectRequestStep(
                seq=s.seq,
                action=s.action,
                state=state_to_proto(s.state),  # type: ignore[arg-type]
                at_ms=ms(s.at),
                actor=s.actor,
                text=s.text,
                record_id=s.record_id,
            )
            for s in request.steps
        ],
        bundle_ready=request.has_bundle,
    )


def evidence_from_proto(msg: consent_pb2.CompleteAccessRequest) -> AccessEvidence:
    """Raises ``LimitExceededError``: more entries than a bundle holds."""
    if len(msg.entries) > bundles.MAX_BUNDLE_ENTRIES:
        raise errors.LimitExceededError(
            f"a bundle holds at most {bundles.MAX_BUNDLE_ENTRIES} entries"
        )
    return AccessEvidence(
        checkpoint_note=msg.checkpoint_note,
        entries=tuple(
            bundles.EvidenceEntry(
                index=e.index,
                leaf=bytes(e.leaf),
                proof=tuple(bytes(h) for h in e.proof),
                subject_salt=bytes(e.subject_salt),
                request_salt=bytes(e.request_salt),
            )
            for e in msg.entries
        ),
        omitted=msg.omitted,
    )


def _fresh_conf(service: SubjectRequestService, clock: Clock) -> VerifiedGlobalConf:
    conf = service.conf()
    conf.check_fresh(clock())  # fail closed on an expired configuration (DESIGN §5)
    return conf


def _list(requests: list[SubjectRequest], now: datetime) -> consent_pb2.ListSubjectRequestsResponse:
    return consent_pb2.ListSubjectRequestsResponse(
        requests=[request_to_proto(r, now) for r in requests]
    )


# --- citizens ------------------------------------------------------------------------------------


class CitizenRequestsServicer(consent_pb2_grpc.CitizenRequestsServicer):  # type: ignore[misc]
    """Citizens file, follow and withdraw their own requests, and complete access requests."""

    def __init__(
        self,
        service: SubjectRequestService,
        clock: Clock,
        token_verifier: TokenVerifier | None = None,
    ) -> None:
        self._service = service
        self._clock = clock
        self._tokens = token_verifier or TokenVerifier()

    def _citizen(self, context: grpc.ServicerContext) -> CitizenId:
        conf = _fresh_conf(self._service, self._clock)
        token = bearer_token(context)
        if not token:
            raise errors.UnauthenticatedError("a citizen token is required")
        claims = self._tokens.verify(token, conf, now=self._clock())
        if claims.role != "citizen" or claims.subject is None:
            raise errors.PermissionDeniedError("only citizens file data-subject requests")
        return claims.subject

    def FileRequest(
        self, request: consent_pb2.FileRequestRequest, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        subject = self._citizen(context)
        filed = self._service.file(
            subject,
            kind_from_proto(request.kind),
            addressee=request.addressee,
            purpose=request.purpose,
            service=request.service,
            details=request.details,
        )
        return request_to_proto(filed, self._clock())

    def ListMyRequests(
        self, request: consent_pb2.ListMyRequestsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListSubjectRequestsResponse:
        return _list(self._service.list_mine(self._citizen(context)), self._clock())

    def GetMyRequest(
        self, request: consent_pb2.SubjectRequestId, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        found = self._service.get_mine(self._citizen(context), request.request_id)
        return request_to_proto(found, self._clock())

    def Withdraw(
        self, request: consent_pb2.SubjectRequestId, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        done = self._service.withdraw(self._citizen(context), request.request_id)
        return request_to_proto(done, self._clock())

    def CompleteAccess(
        self, request: consent_pb2.CompleteAccessRequest, context: grpc.ServicerContext
    ) -> consent_pb2.AccessBundle:
        subject = self._citizen(context)
        evidence = evidence_from_proto(request)
        file = self._service.complete_access(subject, request.request_id, evidence)
        return consent_pb2.AccessBundle(request_id=request.request_id, bundle=file)

    def GetAccessBundle(
        self, request: consent_pb2.SubjectRequestId, context: grpc.ServicerContext
    ) -> consent_pb2.AccessBundle:
        file = self._service.access_bundle(self._citizen(context), request.request_id)
        return consent_pb2.AccessBundle(request_id=request.request_id, bundle=file)


# --- agencies ------------------------------------------------------------------------------------


class AgencyRequestsServicer(consent_pb2_grpc.AgencyRequestsServicer):  # type: ignore[misc]
    """Agencies work the requests addressed to them."""

    def __init__(self, service: SubjectRequestService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    def _allowed(self, context: grpc.ServicerContext) -> frozenset[str]:
        conf = _fresh_conf(self._service, self._clock)
        return _agency_subsystems(context, conf)

    def ListQueue(
        self, request: consent_pb2.ListQueueRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListSubjectRequestsResponse:
        allowed = self._allowed(context)
        found = self._service.queue(
            allowed,
            request.addressee,
            states=[state_from_proto(s) for s in request.states],
            overdue_only=request.overdue_only,
        )
        return _list(found, self._clock())

    def GetRequest(
        self, request: consent_pb2.SubjectRequestId, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        found = self._service.get_addressed(self._allowed(context), request.request_id)
        return request_to_proto(found, self._clock())

    def Act(
        self, request: consent_pb2.ActOnRequestRequest, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        allowed = self._allowed(context)
        done = self._service.act_as_agency(
            allowed, request.request_id, action_from_proto(request.action), request.text
        )
        return request_to_proto(done, self._clock())


# --- inspectors ----------------------------------------------------------------------------------


class InspectorRequestsServicer(consent_pb2_grpc.InspectorRequestsServicer):  # type: ignore[misc]
    """Inspectors see overdue requests everywhere and work the complaints."""

    def __init__(
        self,
        service: SubjectRequestService,
        clock: Clock,
        pseudonym_key: bytes,
        token_verifier: TokenVerifier | None = None,
    ) -> None:
        self._service = service
        self._clock = clock
        self._pseudonym_key = pseudonym_key
        self._tokens = token_verifier or TokenVerifier()

    def _inspector(self, context: grpc.ServicerContext) -> str:
        """How the inspector is named in the request's steps: ``inspector:<certificate name>``
        or ``inspector:token:<keyed hash>`` (a token's subject may be a national id)."""
        conf = _fresh_conf(self._service, self._clock)
        cert = peer_certificate(context)
        if cert is None:
            raise errors.UnauthenticatedError("a client certificate is required")
        uris = pki.certificate_uris(cert)
        if conf.is_revoked(pki.fingerprint(cert), cert.serial_number):
            raise errors.CertificateRevokedError()
        token = bearer_token(context)
        if token:
            if not TOKEN_RELAYS & set(uris):
                raise errors.PermissionDeniedError("this peer may not relay user tokens")
            claims = self._tokens.verify(token, conf, now=self._clock())
            if claims.role != "inspector":
                raise errors.PermissionDeniedError("inspectors only")
            mac = hmac.new(
                self._pseudonym_key,
                _PSEUDONYM_CONTEXT + f"{claims.issuer}\n{claims.principal}".encode(),
                hashlib.sha256,
            ).hexdigest()
            return f"inspector:token:{mac[:24]}"
        names = [u[len(INSPECTOR_URI_PREFIX) :] for u in uris if u.startswith(INSPECTOR_URI_PREFIX)]
        if len(names) != 1 or not names[0]:
            raise errors.PermissionDeniedError("inspectors only")
        return f"inspector:{names[0]}"

    def ListOverdue(
        self, request: consent_pb2.ListOverdueRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListSubjectRequestsResponse:
        self._inspector(context)
        return _list(self._service.overdue_list(request.limit), self._clock())

    def ListComplaints(
        self, request: consent_pb2.ListComplaintsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListSubjectRequestsResponse:
        self._inspector(context)
        states = [state_from_proto(s) for s in request.states]
        return _list(self._service.complaints(states), self._clock())

    def GetComplaint(
        self, request: consent_pb2.SubjectRequestId, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        self._inspector(context)
        return request_to_proto(self._service.get_complaint(request.request_id), self._clock())

    def ActOnComplaint(
        self, request: consent_pb2.ActOnRequestRequest, context: grpc.ServicerContext
    ) -> consent_pb2.SubjectRequest:
        inspector = self._inspector(context)
        done = self._service.act_as_inspector(
            inspector, request.request_id, action_from_proto(request.action), request.text
        )
        return request_to_proto(done, self._clock())
