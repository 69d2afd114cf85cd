"""Legal representation in a test instance: the representation authority (the population
register's information system, as global configuration designates) registers relations with
the consent service; citizens act for the people they represent through the consent service and
the audit log, as the portal relays them.

``representation_env_fixture(name)`` is a module's ``env``: the instance of ``consent_env`` with
the audit log running (consent events shipped to it), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from cdx import rpc
from cdx.clock import utcnow
from cdx.v1 import audit_pb2, audit_pb2_grpc, consent_pb2, consent_pb2_grpc
from tests.integration.consent_env import (
    ConsentEnv,
    bearer,
    consent_env_fixture,
    fresh_citizen,
)
from tests.integration.exchange_harness import HARNESS
from tests.waiting import eventually

POPULATION = "population"
AUTHORITY = "VN:GOV:BCA:population"
#: The instance with its audit log (consent events reach it; histories are read from it).
WITH_AUDIT = replace(HARNESS, audit=True, checkpoint_interval=0.2)


def representation_env_fixture(name: str) -> Any:
    return consent_env_fixture(name, options=WITH_AUDIT)


def authority_api(env: ConsentEnv, agency: str = POPULATION) -> consent_pb2_grpc.RepresentationStub:
    """``Representation`` as ``agency``'s information system (client certificate)."""
    return consent_pb2_grpc.RepresentationStub(env.channel(env.client_identity(agency)))


def representation_api(
    env: ConsentEnv, identity: rpc.TlsIdentity | None = None
) -> consent_pb2_grpc.RepresentationStub:
    """``Representation`` as ``identity`` (default: the portal, relaying citizens' tokens)."""
    who = identity or env.instance.stack.service_identity("portal")
    return consent_pb2_grpc.RepresentationStub(env.channel(who))


def minor(years: int = 10) -> str:
    """A majority date ``years`` ahead (the represented person is a minor until then)."""
    today = utcnow().date()
    return date(today.year + years, today.month, min(today.day, 28)).isoformat()


def register(
    env: ConsentEnv,
    representative: str,
    represented: str,
    *,
    kind: int = consent_pb2.RELATION_PARENT,
    majority_date: str | None = None,
    scopes: tuple[int, ...] = (),
    valid_until: timedelta | None = None,
    authority: str = AUTHORITY,
    agency: str = POPULATION,
    **names: str,
) -> consent_pb2.Relation:
    """The authority registers that ``representative`` represents ``represented``."""
    if majority_date is None and kind == consent_pb2.RELATION_PARENT:
        majority_date = minor()
    relation = consent_pb2.Relation(
        kind=kind,  # type: ignore[arg-type]
        representative=representative,
        represented=represented,
        scopes=list(scopes),  # type: ignore[arg-type]
        majority_date=majority_date or "",
        valid_until_ms=(
            int((utcnow() + valid_until).timestamp() * 1000) if valid_until is not None else 0
        ),
        **names,
    )
    return authority_api(env, agency).RegisterRelation(  # type: ignore[no-any-return]
        consent_pb2.RegisterRelationRequest(authority=authority, relation=relation), timeout=10
    )


def end(env: ConsentEnv, relation_id: str, reason: str = "court-order") -> consent_pb2.Relation:
    return authority_api(env).EndRelation(  # type: ignore[no-any-return]
        consent_pb2.EndRelationRequest(authority=AUTHORITY, relation_id=relation_id, reason=reason),
        timeout=10,
    )


def family(env: ConsentEnv) -> tuple[str, str, consent_pb2.Relation]:
    """A parent, their minor child and the relation between them."""
    parent, child = fresh_citizen(), fresh_citizen()
    return parent, child, register(env, parent, child, represented_name="Khang")


def act_for(
    env: ConsentEnv, citizen: str, acting_for: str, action: str, consent_id: str
) -> consent_pb2.Consent:
    """``citizen`` calls ``action`` on a consent of ``acting_for``'s."""
    method = getattr(env.citizen(env.instance.stack.service_identity("portal")), action)
    return method(  # type: ignore[no-any-return]
        consent_pb2.ConsentActionRequest(consent_id=consent_id, acting_for=acting_for),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def list_for(env: ConsentEnv, citizen: str, acting_for: str) -> list[consent_pb2.Consent]:
    stub = env.citizen(env.instance.stack.service_identity("portal"))
    return list(
        stub.ListMyConsents(
            consent_pb2.ListMyConsentsRequest(acting_for=acting_for),
            metadata=bearer(env.token(citizen)),
            timeout=10,
        ).consents
    )


def history(
    env: ConsentEnv, citizen: str, acting_for: str = ""
) -> audit_pb2.CitizenHistoryResponse:
    """The audit log's history of ``citizen`` (or of ``acting_for``), as the portal asks."""
    stub: audit_pb2_grpc.AuditLogStub = env.instance.stack.citizen_audit()
    return stub.CitizenHistory(  # type: ignore[no-any-return]
        audit_pb2.CitizenHistoryRequest(limit=100, acting_for=acting_for),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def shipped(env: ConsentEnv) -> None:
    """Wait until every consent event is in the audit log."""
    shipper = env.consent.audit_shipper
    assert shipper is not None
    eventually(lambda: shipper.pending() == 0, timeout=20, what="consent events in the log")


__all__ = [
    "AUTHORITY",
    "POPULATION",
    "WITH_AUDIT",
    "act_for",
    "authority_api",
    "end",
    "family",
    "history",
    "list_for",
    "minor",
    "register",
    "representation_api",
    "representation_env_fixture",
    "shipped",
]
