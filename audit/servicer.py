"""``cdx.v1.AuditLog`` over gRPC: who is calling, proto <-> domain, nothing else.

Callers are identified by their mutual-TLS certificate (URI SAN) and, for people, by an
identity-provider token relayed by the portal:

- ``urn:cdx:server:<id>`` registered in global configuration with this very certificate: may
  append its own records and add its own cosignatures;
- ``urn:cdx:service:consent`` (the consent service): may append its own ``consent_event``
  and ``subject_request`` records;
- ``urn:cdx:inspector:<name>``, or a token with role ``inspector`` relayed by a token relay
  (the portal): may search and unseal;
- a citizen token relayed by a token relay: may read that citizen's history, or (``acting_for``)
  the history of a person they legally represent, once the consent service confirms a relation
  in force covering history (``cdx.representation.RepresentationChecker``); the read is itself
  an entry the represented person sees;
- any authenticated peer: checkpoints, proofs, entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc
from cryptography import x509

from audit.service import (
    CONSENT_RECORDER,
    AuditService,
    HistoryEntry,
    Proof,
    SearchHit,
    SearchQuery,
)
from audit.store import CheckpointRow, EntryRow
from cdx import errors, pki, rpc, tokens
from cdx.globalconf import VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.jwks import TokenVerifier
from cdx.representation import RepresentationChecker, Scope
from cdx.v1 import audit_pb2, audit_pb2_grpc, common_pb2

#: Empty: the audience CDX relying parties share, ``urn:cdx:<instance>`` (cdx.tokens).
DEFAULT_TOKEN_AUDIENCE = ""
DEFAULT_TOKEN_RELAYS = ("urn:cdx:service:portal",)
_URI_PREFIX = "urn:cdx:"
#: Indexes and ids are uint64 on the wire, BIGINT (signed) in SQL.
_MAX_INDEX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Peer:
    """The authenticated TLS peer: ``kind`` (server, inspector, service, ...) and its name."""

    uri: str
    kind: str
    name: str
    certificate: x509.Certificate
    fingerprint: str


_PEER_CACHE_SIZE = 1024
_peer_cache: dict[bytes, Peer] = {}


def _peer(context: grpc.ServicerContext) -> Peer:
    """The caller's TLS identity. gRPC verified the certificate chain during the handshake;
    parsing it again for every call would cost more than most calls, so parsed certificates
    are remembered by their exact PEM bytes."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise errors.UnauthenticatedError("a client certificate is required")
    pem = bytes(pems[0])
    peer = _peer_cache.get(pem)
    if peer is not None:
        return peer
    cert = x509.load_pem_x509_certificate(pem)
    uris = [u for u in pki.certificate_uris(cert) if u.startswith(_URI_PREFIX)]
    if not uris:
        raise errors.UnauthenticatedError("the client certificate names no CDX identity")
    uri = uris[0]
    kind, _, name = uri[len(_URI_PREFIX) :].partition(":")
    peer = Peer(uri, kind, name, cert, pki.fingerprint(cert))
    if len(_peer_cache) >= _PEER_CACHE_SIZE:
        _peer_cache.clear()
    _peer_cache[pem] = peer
    return peer


# --- mappers -----------------------------------------------------------------------------------


def checkpoint_pb(row: CheckpointRow) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(
        note=row.note_with_cosignatures,
        size=row.size,
        root_hash=row.root,
        published_at_ms=row.published_at_ms,
        cosignatures=len(row.cosignature_lines),
    )


def entry_pb(row: EntryRow) -> audit_pb2.LogEntry:
    return audit_pb2.LogEntry(
        index=row.idx,
        record=audit_pb2.SignedAccessRecord.FromString(row.leaf),
        integrated_at_ms=row.integrated_at_ms,
    )


def proof_pb(proof: Proof) -> audit_pb2.InclusionProof:
    return audit_pb2.InclusionProof(
        index=proof.index,
        tree_size=proof.tree_size,
        hashes=list(proof.hashes),
        leaf_hash=proof.leaf_hash,
    )


def _hit_pb(hit: SearchHit) -> audit_pb2.SearchHit:
    return audit_pb2.SearchHit(entry=entry_pb(hit.entry), record=hit.record, sealed=hit.sealed)


def _history_pb(item: HistoryEntry) -> audit_pb2.CitizenHistoryEntry:
    out = audit_pb2.CitizenHistoryEntry(
        entry=entry_pb(item.entry), record=item.record, unsealed=item.unsealed
    )
    if item.proof is not None:
        out.proof.CopyFrom(proof_pb(item.proof))
    if item.opening is not None:
        out.opening.CopyFrom(item.opening)
    return out


def _query(request: audit_pb2.SearchRequest, instance: str) -> SearchQuery:
    subject = CitizenId.parse(request.subject, instance) if request.subject else None
    return SearchQuery(
        client=request.client,
        service=request.service,
        purpose=request.purpose,
        decision=int(request.decision),
        from_ms=request.from_ms,
        until_ms=request.until_ms,
        subject=subject,
        reason=request.reason,
        one_sided_only=request.one_sided_only,
        limit=request.limit,
        recorder=request.recorder,
        message_id=request.message_id,
        after_index=request.after_index if request.HasField("after_index") else -1,
        kind=request.kind,
    )


# --- servicer ----------------------------------------------------------------------------------


class AuditLogServicer(audit_pb2_grpc.AuditLogServicer):  # type: ignore[misc]
    """Thin adapter from ``AuditLog`` RPCs to ``AuditService``."""

    def __init__(
        self,
        service: AuditService,
        *,
        token_audience: str = DEFAULT_TOKEN_AUDIENCE,
        token_relays: Sequence[str] = DEFAULT_TOKEN_RELAYS,
        clock: Callable[[], datetime],
        token_verifier: TokenVerifier | None = None,
        representation: RepresentationChecker | None = None,
    ) -> None:
        self._service = service
        self._audience = token_audience
        self._relays = frozenset(token_relays)
        self._clock = clock
        self._tokens = token_verifier or TokenVerifier()
        self._representation = representation

    # --- who is calling -------------------------------------------------------------------------

    @staticmethod
    def peer(context: grpc.ServicerContext) -> Peer:
        """The authenticated TLS peer (any CDX identity).

        Raises:
            UnauthenticatedError: no client certificate naming a CDX identity.
        """
        return _peer(context)

    def _server(self, context: grpc.ServicerContext, conf: VerifiedGlobalConf) -> str:
        peer = _peer(context)
        if peer.kind != "server":
            raise errors.PermissionDeniedError("only security servers may do this")
        server_id = str(pki.server_id_of(peer.certificate))
        info = conf.servers.get(server_id)
        fingerprint = peer.fingerprint
        if info is None or info.auth_fingerprint != fingerprint:
            raise errors.PeerNotRegisteredError()
        if conf.is_revoked(fingerprint, peer.certificate.serial_number):
            raise errors.CertificateRevokedError()
        return server_id

    def appender(self, context: grpc.ServicerContext, conf: VerifiedGlobalConf) -> str:
        """A security server, or the consent service (its consent events only)."""
        peer = _peer(context)
        if peer.uri == CONSENT_RECORDER:
            if conf.is_revoked(peer.fingerprint, peer.certificate.serial_number):
                raise errors.CertificateRevokedError()
            return CONSENT_RECORDER
        return self._server(context, conf)

    def _token(
        self, context: grpc.ServicerContext, conf: VerifiedGlobalConf
    ) -> tokens.TokenClaims | None:
        token = rpc.bearer_token(context)
        if token is None:
            return None
        peer = _peer(context)
        if peer.uri not in self._relays:
            raise errors.PermissionDeniedError("this peer may not relay user tokens")
        return self._tokens.verify(token, conf, now=self._clock(), audience=self._audience)

    def _inspector(self, context: grpc.ServicerContext) -> str:
        conf = self._service.conf()
        claims = self._token(context, conf)
        if claims is not None:
            if claims.role != "inspector":
                raise errors.PermissionDeniedError("inspectors only")
            # An identity provider's subject may be a national id: the log keeps a keyed
            # pseudonym of it, never the subject itself.
            return self._service.inspector_pseudonym(claims.issuer, claims.principal)
        peer = _peer(context)
        if peer.kind != "inspector" or not peer.name:
            raise errors.PermissionDeniedError("inspectors only")
        return peer.name

    def _citizen(self, context: grpc.ServicerContext) -> CitizenId:
        conf = self._service.conf()
        claims = self._token(context, conf)
        if claims is None:
            raise errors.UnauthenticatedError("a citizen token is required")
        if claims.role != "citizen" or claims.subject is None:
            raise errors.PermissionDeniedError("citizens only")
        return claims.subject

    # --- appends ------------------------------------------------------------------------------

    def AppendBatch(
        self, request: audit_pb2.AppendBatchRequest, context: grpc.ServicerContext
    ) -> audit_pb2.AppendBatchResponse:
        caller = self.appender(context, self._service.conf())
        outcomes = self._service.append(caller, list(request.items))
        return audit_pb2.AppendBatchResponse(
            results=[
                audit_pb2.AppendResult(
                    record_id=o.record_id,
                    index=o.index,
                    duplicate=o.duplicate,
                    error_code=o.error_code,
                )
                for o in outcomes
            ]
        )

    def Append(
        self, request: audit_pb2.OutboxItem, context: grpc.ServicerContext
    ) -> audit_pb2.AppendResult:
        caller = self.appender(context, self._service.conf())
        (o,) = self._service.append(caller, [request])
        return audit_pb2.AppendResult(
            record_id=o.record_id, index=o.index, duplicate=o.duplicate, error_code=o.error_code
        )

    # --- public reads ---------------------------------------------------------------------------

    def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> audit_pb2.Checkpoint:
        _peer(context)
        return checkpoint_pb(self._service.checkpoint(request.min_cosignatures))

    def GetInclusionProof(
        self, request: audit_pb2.InclusionProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.InclusionProof:
        _peer(context)
        proof = self._service.inclusion_proof(request.index, request.tree_size, request.record_id)
        return proof_pb(proof)

    def GetConsistencyProof(
        self, request: audit_pb2.ConsistencyProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ConsistencyProof:
        _peer(context)
        hashes = self._service.consistency_proof(request.size1, request.size2)
        return audit_pb2.ConsistencyProof(hashes=hashes)

    def GetEntries(
        self, request: audit_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetEntriesResponse:
        _peer(context)
        rows = self._service.entries(request.start, request.end)
        return audit_pb2.GetEntriesResponse(entries=[entry_pb(r) for r in rows])

    def ListCheckpoints(
        self, request: audit_pb2.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ListCheckpointsResponse:
        _peer(context)
        # after_size is uint64: 0 means "from the start", including the empty tree's checkpoint.
        after = int(request.after_size) if request.after_size else -1
        rows = self._service.list_checkpoints(after, request.limit)
        return audit_pb2.ListCheckpointsResponse(checkpoints=[checkpoint_pb(r) for r in rows])

    # --- witnesses ------------------------------------------------------------------------------

    def AddCosignature(
        self, request: audit_pb2.AddCosignatureRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        caller = self._server(context, self._service.conf())
        self._service.add_cosignature(
            caller, request.checkpoint_note, request.cosignature_line, request.witness
        )
        return common_pb2.Empty()

    # --- inspectors and citizens --------------------------------------------------------------

    def Search(
        self, request: audit_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> audit_pb2.SearchResponse:
        inspector = self._inspector(context)
        query = _query(request, self._service.conf().instance)
        hits, query_record_id = self._service.search(inspector, query)
        return audit_pb2.SearchResponse(
            hits=[_hit_pb(h) for h in hits], query_record_id=query_record_id
        )

    def Unseal(
        self, request: audit_pb2.UnsealRequest, context: grpc.ServicerContext
    ) -> audit_pb2.AppendResult:
        inspector = self._inspector(context)
        result = self._service.unseal(inspector, request.record_id, request.reason)
        return audit_pb2.AppendResult(record_id=result.record_id, index=result.index)

    def _data_subject(self, caller: CitizenId, acting_for: str) -> CitizenId:
        """Whose history: the caller's, or that of the person they name and legally represent
        (the consent service confirms it now; the read is recorded before anything is shown).

        Raises:
            InvalidCitizenIdError: ``acting_for`` is not a national id.
            RepresentationDeniedError (subclasses): no relation in force covers history.
            UnavailableError: the consent service cannot confirm it (fail closed).
        """
        if not acting_for:
            return caller
        represented = CitizenId.parse(acting_for, self._service.conf().instance)
        if represented == caller:
            return caller
        if self._representation is None:
            raise errors.UnavailableError("representation cannot be checked here")
        grant = self._representation.check(caller, represented, Scope.HISTORY)
        self._service.record_representative_access(grant)
        return represented

    def CitizenHistory(
        self, request: audit_pb2.CitizenHistoryRequest, context: grpc.ServicerContext
    ) -> audit_pb2.CitizenHistoryResponse:
        subject = self._data_subject(self._citizen(context), request.acting_for)
        page = self._service.citizen_history(
            subject, request.limit, min(request.before_index, _MAX_INDEX)
        )
        response = audit_pb2.CitizenHistoryResponse(
            entries=[_history_pb(i) for i in page.entries],
            next_before_index=page.next_before_index,
        )
        if page.checkpoint is not None:
            response.checkpoint.CopyFrom(checkpoint_pb(page.checkpoint))
        return response

    def ListRefused(
        self, request: audit_pb2.ListRefusedRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ListRefusedResponse:
        inspector = self._inspector(context)
        rows = self._service.list_refused(
            inspector, min(request.after_id, _MAX_INDEX), request.limit, request.recorder
        )
        return audit_pb2.ListRefusedResponse(
            refused=[
                audit_pb2.RefusedAppend(
                    id=r.id,
                    recorder=r.recorder,
                    record_id=r.record_id,
                    code=r.code,
                    refused_at_ms=r.refused_at_ms,
                )
                for r in rows
            ]
        )
