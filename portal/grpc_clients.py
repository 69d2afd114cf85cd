"""The portal's backends over gRPC: the consent and audit services, reached with mutual TLS as
``urn:cdx:service:portal`` and relaying the user's identity-provider token as
``authorization: Bearer``. Protobuf stops here: every answer is mapped to ``portal.backends``
types (the audit log's signed bytes are kept exactly as received, for verification)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from audit.client import AuditClient
from cdx import errors, rpc
from cdx.v1 import audit_pb2, common_pb2, consent_pb2, consent_pb2_grpc
from portal import backends as b

_STATES: dict[int, b.ConsentStateName] = {
    consent_pb2.PENDING: "PENDING",
    consent_pb2.ACTIVE: "ACTIVE",
    consent_pb2.PAUSED: "PAUSED",
    consent_pb2.REVOKED: "REVOKED",
    consent_pb2.EXPIRED: "EXPIRED",
    consent_pb2.REJECTED: "REJECTED",
}
_DECISIONS = {
    "": common_pb2.DECISION_UNSPECIFIED,
    "ALLOW": common_pb2.ALLOW,
    "DENY": common_pb2.DENY,
}


def _dt(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms > 0 else None


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- consent -----------------------------------------------------------------------------------


def consent_from_pb(msg: consent_pb2.Consent) -> b.Consent:
    """Map a ``Consent``; the subject (national id) in the terms is dropped here.

    Raises:
        MalformedError: an unknown state.
    """
    state = _STATES.get(msg.state)
    if state is None:
        raise errors.MalformedError("unknown consent state")
    t = msg.terms
    terms = b.ConsentTerms(
        grantee=t.grantee,
        services=tuple(t.services),
        purpose=t.purpose,
        fields=tuple(t.fields),
        data_from=t.data_from,
        data_until=t.data_until,
        valid_from=_dt(t.valid_from_ms),
        valid_until=_dt(t.valid_until_ms),
        max_uses=t.max_uses,
        retention_days=t.retention_days,
    )
    return b.Consent(
        id=msg.id,
        state=state,
        terms=terms,
        artefact=msg.artefact,
        supersedes=msg.supersedes,
        uses=msg.uses,
        created_at=_dt(msg.created_at_ms),
        updated_at=_dt(msg.updated_at_ms),
        requested_by=msg.requested_by,
        version=msg.version,
    )


_KINDS = {
    consent_pb2.RELATION_PARENT: "parent",
    consent_pb2.RELATION_GUARDIAN: "guardian",
    consent_pb2.RELATION_AUTHORISED: "authorised",
}
_SCOPES = {consent_pb2.SCOPE_HISTORY: "history", consent_pb2.SCOPE_CONSENTS: "consents"}


def relation_from_pb(msg: consent_pb2.Relation, *, other: str, name: str) -> b.Relation:
    """Map a ``Relation`` as seen by one of its parties (``other``: the other party's id).

    Raises:
        MalformedError: an unknown relation kind.
    """
    kind = _KINDS.get(msg.kind)
    if kind is None:
        raise errors.MalformedError("unknown relation kind")
    return b.Relation(
        id=msg.id,
        kind=kind,
        person=other,
        name=name,
        scopes=tuple(_SCOPES[s] for s in msg.scopes if s in _SCOPES),
        ends_at=_dt(msg.ends_at_ms),
        in_force=msg.in_force,
    )


class GrpcConsentClient:
    """``ConsentBackend`` over ``cdx.v1.CitizenConsent`` (one long-lived channel)."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 5.0,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._identity = identity
        self._timeout = timeout
        self._server_name = server_name
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._bound = ""
        self._stub: consent_pb2_grpc.CitizenConsentStub | None = None
        self._relations: consent_pb2_grpc.RepresentationStub | None = None

    def _stub_now(self) -> consent_pb2_grpc.CitizenConsentStub:
        address = self._address() if callable(self._address) else self._address
        if not address:
            raise errors.UnavailableError("no consent service address is configured")
        with self._lock:
            if self._stub is None or address != self._bound:
                if self._channel is not None:
                    self._channel.close()
                self._channel = rpc.secure_channel(
                    address, self._identity, server_name=self._server_name
                )
                self._stub = consent_pb2_grpc.CitizenConsentStub(self._channel)
                self._relations = consent_pb2_grpc.RepresentationStub(self._channel)
                self._bound = address
            return self._stub

    def _call(self, method: str, request: Any, token: str) -> Any:
        fn = getattr(self._stub_now(), method)
        return rpc.invoke(fn, request, timeout=self._timeout, metadata=_auth(token))

    def _relations_call(self, method: str, request: Any, token: str) -> Any:
        self._stub_now()
        fn = getattr(self._relations, method)
        return rpc.invoke(fn, request, timeout=self._timeout, metadata=_auth(token))

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = self._relations = None

    def list_my_consents(self, token: str, acting_for: str = "") -> list[b.Consent]:
        request = consent_pb2.ListMyConsentsRequest(acting_for=acting_for)
        response = self._call("ListMyConsents", request, token)
        return [consent_from_pb(c) for c in response.consents]

    def act(
        self, token: str, action: b.ConsentAction, consent_id: str, acting_for: str = ""
    ) -> b.Consent:
        if action not in b.CONSENT_ACTIONS:
            raise errors.InvalidArgumentError("unknown consent action")
        request = consent_pb2.ConsentActionRequest(consent_id=consent_id, acting_for=acting_for)
        return consent_from_pb(self._call(action.capitalize(), request, token))

    def receipt(self, token: str, consent_id: str, acting_for: str = "") -> b.ConsentReceipt:
        request = consent_pb2.ConsentActionRequest(consent_id=consent_id, acting_for=acting_for)
        response = self._call("GetReceipt", request, token)
        return b.ConsentReceipt(response.json, response.jws)

    def represented(self, token: str) -> list[b.Relation]:
        response = self._relations_call(
            "ListRepresented", consent_pb2.ListMyRelationsRequest(), token
        )
        return [
            relation_from_pb(r, other=r.represented, name=r.represented_name)
            for r in response.relations
        ]

    def representatives(self, token: str) -> list[b.Relation]:
        response = self._relations_call(
            "ListRepresentatives", consent_pb2.ListMyRelationsRequest(), token
        )
        return [
            relation_from_pb(r, other=r.representative, name=r.representative_name)
            for r in response.relations
        ]

    def events(self, token: str, consent_id: str, acting_for: str = "") -> list[b.ConsentEvent]:
        request = consent_pb2.ConsentActionRequest(consent_id=consent_id, acting_for=acting_for)
        response = self._call("ListEvents", request, token)
        out = []
        for e in response.events:
            at = _dt(e.at_ms)
            out.append(
                b.ConsentEvent(
                    e.seq,
                    e.action,
                    _STATES.get(e.state, "PENDING"),
                    at or datetime.fromtimestamp(0, tz=UTC),
                    e.actor,
                )
            )
        return out


# --- audit -------------------------------------------------------------------------------------


def entry_from_pb(msg: audit_pb2.LogEntry) -> b.LogEntry:
    # Leaf data is the serialized SignedAccessRecord; its proto encoding is canonical, so the
    # bytes round-trip exactly (a mismatch would show as a failed proof, never as verified).
    return b.LogEntry(msg.index, msg.record.SerializeToString(), _dt(msg.integrated_at_ms))


def proof_from_pb(msg: audit_pb2.InclusionProof) -> b.InclusionProof:
    return b.InclusionProof(msg.index, msg.tree_size, tuple(msg.hashes), msg.leaf_hash)


def checkpoint_from_pb(msg: audit_pb2.Checkpoint) -> b.SignedCheckpoint:
    return b.SignedCheckpoint(msg.note, msg.size, _dt(msg.published_at_ms))


class GrpcAuditClient:
    """``AuditBackend`` over ``cdx.v1.AuditLog`` (the transport is ``audit.client.AuditClient``)."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 5.0,
        server_name: str | None = None,
    ) -> None:
        self._client = AuditClient(address, identity, timeout=timeout, server_name=server_name)

    def close(self) -> None:
        self._client.close()

    def checkpoint(self, min_cosignatures: int = 0) -> b.SignedCheckpoint:
        return checkpoint_from_pb(self._client.checkpoint(min_cosignatures))

    def inclusion_proof(self, record_id: str, tree_size: int) -> b.InclusionProof:
        return proof_from_pb(self._client.inclusion_proof(tree_size=tree_size, record_id=record_id))

    def consistency_proof(self, size1: int, size2: int) -> tuple[bytes, ...]:
        return tuple(self._client.consistency_proof(size1, size2))

    def entries(self, start: int, end: int) -> list[b.LogEntry]:
        return [entry_from_pb(e) for e in self._client.entries(start, end)]

    def citizen_history(
        self, token: str, limit: int, before_index: int = 0, acting_for: str = ""
    ) -> b.CitizenHistory:
        response = self._client.citizen_history(token, limit, before_index, acting_for)
        items = []
        for item in response.entries:
            opening = None
            if item.HasField("opening"):
                o = item.opening
                opening = b.RecordOpening(o.record_id, o.subject, o.subject_salt, o.request_salt)
            proof = proof_from_pb(item.proof) if item.HasField("proof") else None
            items.append(b.HistoryItem(entry_from_pb(item.entry), proof, opening))
        checkpoint = (
            checkpoint_from_pb(response.checkpoint) if response.HasField("checkpoint") else None
        )
        return b.CitizenHistory(tuple(items), checkpoint, response.next_before_index)

    def search(self, token: str, query: b.SearchQuery) -> b.SearchResult:
        request = audit_pb2.SearchRequest(
            client=query.client,
            service=query.service,
            purpose=query.purpose,
            decision=_DECISIONS[query.decision],
            from_ms=query.from_ms,
            until_ms=query.until_ms,
            subject=query.subject,
            reason=query.reason,
            one_sided_only=query.one_sided_only,
            limit=query.limit,
            recorder=query.recorder,
        )
        response = self._client.search(request, token=token)
        hits = tuple(b.SearchHit(entry_from_pb(h.entry), h.sealed) for h in response.hits)
        return b.SearchResult(hits, response.query_record_id)

    def unseal(self, token: str, record_id: str, reason: str) -> str:
        return self._client.unseal(record_id, reason, token=token).record_id

    def refused(self, token: str, limit: int) -> list[b.RefusedAppend]:
        return [
            b.RefusedAppend(r.recorder, r.record_id, r.code, _dt(r.refused_at_ms))
            for r in self._client.list_refused(limit=limit, token=token)
        ]
