"""Asks the consent service whether one person may act for another now: the
``cdx.representation.RepresentationChecker`` the audit log holds (docs/adr/0018).

``RepresentationClient`` calls ``Representation.CheckRepresentation`` over mutual TLS with the
audit log's own service certificate (``urn:cdx:service:audit``, the only caller the consent
service answers). No cache: a relation the authority ended, or one that expired at the
represented person's majority, stops the next call. When the consent service cannot be reached
the call fails (``UnavailableError``): a representative is never shown a history on a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from cdx import errors, rpc
from cdx.ids import CitizenId
from cdx.representation import RelationKind, RepresentationGrant, Scope
from cdx.v1 import consent_pb2, consent_pb2_grpc

_SCOPES = {Scope.HISTORY: consent_pb2.SCOPE_HISTORY, Scope.CONSENTS: consent_pb2.SCOPE_CONSENTS}
_KINDS = {
    consent_pb2.RELATION_PARENT: RelationKind.PARENT,
    consent_pb2.RELATION_GUARDIAN: RelationKind.GUARDIAN,
    consent_pb2.RELATION_AUTHORISED: RelationKind.AUTHORISED,
}


def _when(value: int) -> datetime | None:
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise errors.MalformedError("the relation's end is out of range") from exc


class RepresentationClient:
    """``RepresentationChecker`` over gRPC; ``address`` may be a callable (global
    configuration's ``consent_service_address``, which can change)."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._address = address
        self._identity = identity
        self._timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: consent_pb2_grpc.RepresentationStub | None = None
        self._bound = ""

    def _stub_now(self) -> consent_pb2_grpc.RepresentationStub:
        address = self._address() if callable(self._address) else self._address
        if not address:
            raise errors.UnavailableError("no consent service address is configured")
        with self._lock:
            if self._stub is None or address != self._bound:
                if self._channel is not None:
                    self._channel.close()
                self._channel = rpc.secure_channel(address, self._identity)
                self._stub = consent_pb2_grpc.RepresentationStub(self._channel)
                self._bound = address
            return self._stub

    def check(
        self, representative: CitizenId, represented: CitizenId, scope: Scope
    ) -> RepresentationGrant:
        """See ``cdx.representation.RepresentationChecker.check``.

        Raises:
            RepresentationDeniedError (subclasses): no relation in force covers ``scope``.
            UnavailableError / DeadlineExceededError: the consent service did not answer.
            MalformedError: it answered with a relation kind this client does not know.
        """
        request = consent_pb2.CheckRepresentationRequest(
            representative=representative.value, represented=represented.value, scope=_SCOPES[scope]
        )
        answer = rpc.invoke(self._stub_now().CheckRepresentation, request, timeout=self._timeout)
        kind = _KINDS.get(answer.kind)
        if kind is None:
            raise errors.MalformedError("the consent service named an unknown relation kind")
        return RepresentationGrant(
            answer.relation_id,
            kind,
            representative,
            represented,
            _when(answer.ends_at_ms),
        )

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None
