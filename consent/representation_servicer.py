"""``cdx.v1.Representation`` over gRPC: who is calling, proto <-> domain, nothing else.

- the representation authority's calls (``RegisterRelation``, ``AmendRelation``,
  ``EndRelation``, ``ListRelations``): mutual TLS with a security server's auth certificate or
  an information system's client certificate, acting for the subsystem the request names,
  which must be the one global configuration designates (``consent.representation`` checks);
- citizens' calls (``ListRepresented``, ``ListRepresentatives``): a bearer ID token, as for
  ``CitizenConsent``;
- ``CheckRepresentation``: only the audit log (``urn:cdx:service:audit``, a registry-issued
  service certificate that is not revoked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime

import grpc

from cdx import errors, pki
from cdx.clock import Clock
from cdx.ids import CitizenId
from cdx.jwks import TokenVerifier
from cdx.representation import RelationKind, Scope
from cdx.rpc import bearer_token, peer_certificate
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.model import from_ms, ms
from consent.relations import Relation, RelationTerms
from consent.representation import RelationBook
from consent.service import ConsentService
from consent.servicer import _agency_subsystems, _fresh_conf, citizen_of

#: The one peer that asks whether a representative may read a history.
AUDIT_PEER = "urn:cdx:service:audit"

_KINDS = {
    RelationKind.PARENT: consent_pb2.RELATION_PARENT,
    RelationKind.GUARDIAN: consent_pb2.RELATION_GUARDIAN,
    RelationKind.AUTHORISED: consent_pb2.RELATION_AUTHORISED,
}
_SCOPES = {Scope.HISTORY: consent_pb2.SCOPE_HISTORY, Scope.CONSENTS: consent_pb2.SCOPE_CONSENTS}


def kind_from_proto(value: int) -> RelationKind:
    for kind, number in _KINDS.items():
        if number == value:
            return kind
    raise errors.InvalidArgumentError("unknown relation kind")


def scope_from_proto(value: int) -> Scope:
    for scope, number in _SCOPES.items():
        if number == value:
            return scope
    raise errors.InvalidArgumentError("unknown representation scope")


def _majority(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise errors.InvalidArgumentError("the majority date is YYYY-MM-DD") from exc


def terms_from_proto(msg: consent_pb2.Relation, *, instance: str, now: datetime) -> RelationTerms:
    """The terms of a registration or amendment (``valid_from_ms`` 0: from now).

    Raises:
        InvalidCitizenIdError: a party is not a national id.
        InvalidArgumentError: an unknown kind or scope, a malformed date.
    """
    if len(msg.scopes) > len(_SCOPES):
        raise errors.LimitExceededError("too many scopes")
    return RelationTerms(
        kind=kind_from_proto(msg.kind),
        representative=CitizenId.parse(msg.representative, instance),
        represented=CitizenId.parse(msg.represented, instance),
        scopes=frozenset(scope_from_proto(s) for s in msg.scopes),
        valid_from=from_ms(msg.valid_from_ms) if msg.valid_from_ms > 0 else now,
        valid_until=from_ms(msg.valid_until_ms) if msg.valid_until_ms > 0 else None,
        majority_on=_majority(msg.majority_date),
        reference=msg.reference,
        representative_name=msg.representative_name,
        represented_name=msg.represented_name,
    )


#: What an amendment may change, by ``Relation`` field name.
AMENDABLE = (
    "valid_from_ms",
    "valid_until_ms",
    "majority_date",
    "scopes",
    "reference",
    "representative_name",
    "represented_name",
)


def amendment(
    msg: consent_pb2.Relation, set_fields: Sequence[str], *, instance: str, now: datetime
) -> Callable[[RelationTerms], RelationTerms]:
    """The change an ``AmendRelation`` request makes to a relation's current terms.

    Raises:
        InvalidArgumentError: an unknown field name, an unknown scope, a malformed date or id.
    """
    unknown = set(set_fields) - set(AMENDABLE)
    if unknown:
        raise errors.InvalidArgumentError(
            "only validity, majority date, scopes, names and reference can be amended"
        )
    if len(msg.scopes) > len(_SCOPES):
        raise errors.LimitExceededError("too many scopes")
    wanted = frozenset(set_fields or AMENDABLE)
    people = [
        CitizenId.parse(text, instance) if text else None
        for text in (msg.representative, msg.represented)
    ]
    kind = kind_from_proto(msg.kind) if msg.kind else None
    scopes = frozenset(scope_from_proto(s) for s in msg.scopes)
    majority = _majority(msg.majority_date)

    def change(old: RelationTerms) -> RelationTerms:
        return replace(
            old,
            kind=kind or old.kind,
            representative=people[0] or old.representative,
            represented=people[1] or old.represented,
            valid_from=(from_ms(msg.valid_from_ms) if msg.valid_from_ms > 0 else now)
            if "valid_from_ms" in wanted
            else old.valid_from,
            valid_until=(from_ms(msg.valid_until_ms) if msg.valid_until_ms > 0 else None)
            if "valid_until_ms" in wanted
            else old.valid_until,
            majority_on=majority if "majority_date" in wanted else old.majority_on,
            scopes=scopes if "scopes" in wanted else old.scopes,
            reference=msg.reference if "reference" in wanted else old.reference,
            representative_name=msg.representative_name
            if "representative_name" in wanted
            else old.representative_name,
            represented_name=msg.represented_name
            if "represented_name" in wanted
            else old.represented_name,
        )

    return change


def relation_to_proto(relation: Relation, now: datetime) -> consent_pb2.Relation:
    t = relation.terms
    ends = relation.ends_at
    return consent_pb2.Relation(
        id=relation.id,
        kind=_KINDS[t.kind],
        representative=t.representative.value,
        represented=t.represented.value,
        scopes=sorted(_SCOPES[s] for s in t.scopes),
        valid_from_ms=ms(t.valid_from),
        valid_until_ms=ms(t.valid_until) if t.valid_until else 0,
        majority_date=t.majority_on.isoformat() if t.majority_on else "",
        ended_at_ms=ms(relation.ended_at) if relation.ended_at else 0,
        authority=relation.authority,
        reference=t.reference,
        representative_name=t.representative_name,
        represented_name=t.represented_name,
        ends_at_ms=ms(ends) if ends else 0,
        in_force=relation.in_force(now),
        version=relation.version,
        created_at_ms=ms(relation.created_at),
        updated_at_ms=ms(relation.updated_at),
    )


class RepresentationServicer(consent_pb2_grpc.RepresentationServicer):  # type: ignore[misc]
    """Thin adapter from ``Representation`` RPCs to the consent service's ``RelationBook``."""

    def __init__(
        self, service: ConsentService, clock: Clock, token_verifier: TokenVerifier | None = None
    ) -> None:
        self._service = service
        self._book: RelationBook = service.relations
        self._clock = clock
        self._tokens = token_verifier or TokenVerifier()

    # --- who is calling -----------------------------------------------------------------------

    def _authority(self, context: grpc.ServicerContext, authority: str) -> str:
        conf = _fresh_conf(self._service, self._clock)
        if authority not in _agency_subsystems(context, conf):
            raise errors.PermissionDeniedError("the caller does not act for this subsystem")
        return conf.instance

    def _citizen(self, context: grpc.ServicerContext) -> CitizenId:
        conf = _fresh_conf(self._service, self._clock)
        return citizen_of(bearer_token(context), conf, self._tokens, self._clock())

    def _audit_log(self, context: grpc.ServicerContext) -> str:
        conf = _fresh_conf(self._service, self._clock)
        cert = peer_certificate(context)
        if cert is None:
            raise errors.UnauthenticatedError("a client certificate is required")
        if AUDIT_PEER not in pki.certificate_uris(cert):
            raise errors.PermissionDeniedError("only the audit log checks representation")
        if conf.is_revoked(pki.fingerprint(cert), cert.serial_number):
            raise errors.CertificateRevokedError()
        return conf.instance

    # --- the authority --------------------------------------------------------------------------

    def RegisterRelation(
        self, request: consent_pb2.RegisterRelationRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Relation:
        instance = self._authority(context, request.authority)
        now = self._clock()
        terms = terms_from_proto(request.relation, instance=instance, now=now)
        return relation_to_proto(self._book.register(request.authority, terms), now)

    def AmendRelation(
        self, request: consent_pb2.AmendRelationRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Relation:
        instance = self._authority(context, request.authority)
        now = self._clock()
        change = amendment(request.relation, request.set_fields, instance=instance, now=now)
        relation = self._book.amend(request.authority, request.relation_id, change)
        return relation_to_proto(relation, now)

    def EndRelation(
        self, request: consent_pb2.EndRelationRequest, context: grpc.ServicerContext
    ) -> consent_pb2.Relation:
        self._authority(context, request.authority)
        ended_at = from_ms(request.ended_at_ms) if request.ended_at_ms > 0 else None
        relation = self._book.end(request.authority, request.relation_id, ended_at, request.reason)
        return relation_to_proto(relation, self._clock())

    def ListRelations(
        self, request: consent_pb2.ListRelationsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListRelationsResponse:
        instance = self._authority(context, request.authority)
        person = CitizenId.parse(request.person, instance)
        now = self._clock()
        relations = self._book.list_for(request.authority, person)
        return consent_pb2.ListRelationsResponse(
            relations=[relation_to_proto(r, now) for r in relations]
        )

    # --- citizens -------------------------------------------------------------------------------

    def ListRepresented(
        self, request: consent_pb2.ListMyRelationsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListRelationsResponse:
        person = self._citizen(context)
        now = self._clock()
        relations = self._book.represented_by(person, include_ended=request.include_ended)
        return consent_pb2.ListRelationsResponse(
            relations=[relation_to_proto(r, now) for r in relations]
        )

    def ListRepresentatives(
        self, request: consent_pb2.ListMyRelationsRequest, context: grpc.ServicerContext
    ) -> consent_pb2.ListRelationsResponse:
        person = self._citizen(context)
        now = self._clock()
        relations = self._book.representatives_of(person, include_ended=request.include_ended)
        return consent_pb2.ListRelationsResponse(
            relations=[relation_to_proto(r, now) for r in relations]
        )

    # --- the audit log --------------------------------------------------------------------------

    def CheckRepresentation(
        self, request: consent_pb2.CheckRepresentationRequest, context: grpc.ServicerContext
    ) -> consent_pb2.CheckRepresentationResponse:
        instance = self._audit_log(context)
        grant = self._book.check(
            CitizenId.parse(request.representative, instance),
            CitizenId.parse(request.represented, instance),
            scope_from_proto(request.scope),
        )
        return consent_pb2.CheckRepresentationResponse(
            relation_id=grant.relation_id,
            kind=_KINDS[grant.kind],
            ends_at_ms=ms(grant.ends_at) if grant.ends_at else 0,
        )
