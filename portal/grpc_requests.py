"""``portal.requests_backend.RequestsBackend`` over gRPC: the consent service's
``CitizenRequests`` and ``InspectorRequests``, reached with mutual TLS as
``urn:cdx:service:portal`` and relaying the user's token. Protobuf stops here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from cdx import errors, rpc
from cdx.v1 import consent_pb2, consent_pb2_grpc
from portal import requests_backend as rb

_KIND_PB = {
    k: consent_pb2.SubjectRequestKind.Value(f"REQUEST_{k.upper()}") for k in rb.REQUEST_KINDS
}
_KIND_NAME = {v: k for k, v in _KIND_PB.items()}
_ACTION_PB = {
    a: consent_pb2.SubjectRequestAction.Value(f"REQUEST_{a.upper()}") for a in rb.HANDLER_ACTIONS
}
_STATES: dict[int, rb.RequestStateName] = {
    consent_pb2.REQUEST_RECEIVED: "RECEIVED",
    consent_pb2.REQUEST_ACKNOWLEDGED: "ACKNOWLEDGED",
    consent_pb2.REQUEST_IN_PROGRESS: "IN_PROGRESS",
    consent_pb2.REQUEST_COMPLETED: "COMPLETED",
    consent_pb2.REQUEST_REFUSED: "REFUSED",
    consent_pb2.REQUEST_WITHDRAWN: "WITHDRAWN",
}
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms > 0 else _EPOCH


def request_from_pb(msg: consent_pb2.SubjectRequest) -> rb.SubjectRequest:
    """Raises ``MalformedError``: an unknown kind or state."""
    kind = _KIND_NAME.get(msg.kind)
    state = _STATES.get(msg.state)
    if kind is None or state is None:
        raise errors.MalformedError("unknown request kind or state")
    return rb.SubjectRequest(
        id=msg.id,
        kind=kind,
        state=state,
        addressee=msg.addressee,
        purpose=msg.purpose,
        service=msg.service,
        received_at=_dt(msg.received_at_ms),
        acknowledge_by=_dt(msg.acknowledge_by_ms),
        complete_by=_dt(msg.complete_by_ms),
        extended=msg.extended,
        closed_at=_dt(msg.closed_at_ms) if msg.closed_at_ms else None,
        overdue=msg.overdue,
        steps=tuple(
            rb.RequestStep(
                action=s.action,
                state=_STATES.get(s.state, "RECEIVED"),
                at=_dt(s.at_ms),
                actor=s.actor,
                text=s.text,
                record_id=s.record_id,
            )
            for s in msg.steps
        ),
        bundle_ready=msg.bundle_ready,
        subject=msg.subject,
    )


class GrpcRequestsClient:
    """``RequestsBackend`` over one long-lived channel to the consent service."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._identity = identity
        self._timeout = timeout
        self._server_name = server_name
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._bound = ""

    def _channel_now(self) -> grpc.Channel:
        address = self._address() if callable(self._address) else self._address
        if not address:
            raise errors.UnavailableError("no consent service address is configured")
        with self._lock:
            if self._channel is None or address != self._bound:
                if self._channel is not None:
                    self._channel.close()
                self._channel = rpc.secure_channel(
                    address, self._identity, server_name=self._server_name
                )
                self._bound = address
            return self._channel

    def _citizen(self, method: str, request: Any, token: str) -> Any:
        stub = consent_pb2_grpc.CitizenRequestsStub(self._channel_now())
        return rpc.invoke(
            getattr(stub, method), request, timeout=self._timeout, metadata=_auth(token)
        )

    def _inspector(self, method: str, request: Any, token: str) -> Any:
        stub = consent_pb2_grpc.InspectorRequestsStub(self._channel_now())
        return rpc.invoke(
            getattr(stub, method), request, timeout=self._timeout, metadata=_auth(token)
        )

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None

    # --- citizens ------------------------------------------------------------------------------

    def file(
        self,
        token: str,
        kind: rb.RequestKindName,
        *,
        addressee: str = "",
        purpose: str = "",
        service: str = "",
        details: str = "",
    ) -> rb.SubjectRequest:
        if kind not in _KIND_PB:
            raise errors.InvalidArgumentError("unknown request kind")
        request = consent_pb2.FileRequestRequest(
            kind=_KIND_PB[kind],
            addressee=addressee,
            purpose=purpose,
            service=service,
            details=details,
        )
        return request_from_pb(self._citizen("FileRequest", request, token))

    def list_mine(self, token: str) -> list[rb.SubjectRequest]:
        response = self._citizen("ListMyRequests", consent_pb2.ListMyRequestsRequest(), token)
        return [request_from_pb(r) for r in response.requests]

    def get_mine(self, token: str, request_id: str) -> rb.SubjectRequest:
        request = consent_pb2.SubjectRequestId(request_id=request_id)
        return request_from_pb(self._citizen("GetMyRequest", request, token))

    def withdraw(self, token: str, request_id: str) -> rb.SubjectRequest:
        request = consent_pb2.SubjectRequestId(request_id=request_id)
        return request_from_pb(self._citizen("Withdraw", request, token))

    def complete_access(self, token: str, request_id: str, evidence: rb.AccessEvidence) -> bytes:
        request = consent_pb2.CompleteAccessRequest(
            request_id=request_id,
            checkpoint_note=evidence.checkpoint_note,
            entries=[
                consent_pb2.AccessEvidenceEntry(
                    index=e.index,
                    leaf=e.leaf,
                    proof=list(e.proof),
                    subject_salt=e.subject_salt,
                    request_salt=e.request_salt,
                )
                for e in evidence.entries
            ],
            omitted=evidence.omitted,
        )
        return bytes(self._citizen("CompleteAccess", request, token).bundle)

    def access_bundle(self, token: str, request_id: str) -> bytes:
        request = consent_pb2.SubjectRequestId(request_id=request_id)
        return bytes(self._citizen("GetAccessBundle", request, token).bundle)

    # --- inspectors ----------------------------------------------------------------------------

    def overdue(self, token: str) -> list[rb.SubjectRequest]:
        response = self._inspector("ListOverdue", consent_pb2.ListOverdueRequest(), token)
        return [request_from_pb(r) for r in response.requests]

    def complaints(self, token: str) -> list[rb.SubjectRequest]:
        response = self._inspector("ListComplaints", consent_pb2.ListComplaintsRequest(), token)
        return [request_from_pb(r) for r in response.requests]

    def complaint(self, token: str, request_id: str) -> rb.SubjectRequest:
        request = consent_pb2.SubjectRequestId(request_id=request_id)
        return request_from_pb(self._inspector("GetComplaint", request, token))

    def act_on_complaint(
        self, token: str, request_id: str, action: rb.HandlerAction, text: str = ""
    ) -> rb.SubjectRequest:
        if action not in _ACTION_PB:
            raise errors.InvalidArgumentError("unknown step")
        request = consent_pb2.ActOnRequestRequest(
            request_id=request_id,
            action=_ACTION_PB[action],
            text=text,
        )
        return request_from_pb(self._inspector("ActOnComplaint", request, token))


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
