"""Attacks on legal representation (docs/adr/0018), over real servers on SQLite and PostgreSQL:

- a representative keeps acting after the authority ended the relation, or after the child came
  of age;
- a citizen claims to act for someone they do not represent (a forged ``acting_for``), at the
  consent service and at the audit log;
- an agency other than the designated authority registers, amends or ends relations (to make
  itself someone's "guardian"); anyone but the audit log probes who represents whom;
- a copy of the consent database (a stolen disk, a backup, a DBA) names who represents whom;
- an event names a representative by national id (events are append-only: never shreddable).

Every refusal leaves nothing behind: no consent changes, no consent event, no log entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from cdx import errors
from cdx.consentpolicy import ConsentAction
from cdx.ids import CitizenId
from cdx.representation import Scope
from cdx.rpc import ERROR_CODE_KEY
from cdx.v1 import consent_pb2
from consent import store
from consent.representation_client import RepresentationClient
from tests.integration.consent_env import (
    TAX,
    ConsentEnv,
    bearer,
    fresh_citizen,
    request_consent,
    terms,
)
from tests.integration.representation_support import (
    AUTHORITY,
    act_for,
    authority_api,
    end,
    family,
    history,
    list_for,
    register,
    representation_api,
    representation_env_fixture,
    shipped,
)

from .at_rest import ids_found, postgres_file_bytes, sqlite_file_bytes, table_bytes

env = representation_env_fixture("attack-representation")


def _code(call: Callable[[], Any]) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ), refused.value
    return dict(refused.value.trailing_metadata() or ()).get(ERROR_CODE_KEY, "")


def _consent_calls(env: ConsentEnv, who: str, acting_for: str, consent_id: str) -> dict[str, Any]:
    """Every citizen-side call ``who`` can make on ``acting_for``'s consents."""
    stub = env.citizen(env.instance.stack.service_identity("portal"))
    auth = bearer(env.token(who))
    action = consent_pb2.ConsentActionRequest(consent_id=consent_id, acting_for=acting_for)
    calls: dict[str, Any] = {
        name: (lambda name=name: getattr(stub, name)(action, metadata=auth, timeout=10))
        for name in ("Approve", "Reject", "Pause", "Resume", "Revoke", "GetReceipt", "ListEvents")
    }
    calls["ListMyConsents"] = lambda: stub.ListMyConsents(
        consent_pb2.ListMyConsentsRequest(acting_for=acting_for), metadata=auth, timeout=10
    )
    calls["Grant"] = lambda: stub.Grant(
        consent_pb2.GrantRequest(terms=terms(acting_for), acting_for=acting_for),
        metadata=auth,
        timeout=10,
    )
    calls["Amend"] = lambda: stub.Amend(
        consent_pb2.AmendRequest(
            consent_id=consent_id, terms=terms(acting_for), acting_for=acting_for
        ),
        metadata=auth,
        timeout=10,
    )
    calls["CitizenHistory"] = lambda: history(env, who, acting_for)
    return calls


def _trail(env: ConsentEnv) -> tuple[int, int]:
    """(consent events, log entries): what a refused call must not add to."""
    shipped(env)
    audit = env.instance.stack.audit
    assert audit is not None
    with env.consent.service._engine.connect() as conn:
        return store.head_seq(conn), audit.store.tree_state().size


def test_a_representative_whose_relation_ended_cannot_act(env: ConsentEnv) -> None:
    parent, child, relation = family(env)
    consent = request_consent(env, child)
    act_for(env, parent, child, "Approve", consent.id)  # while the relation is in force
    end(env, relation.id)
    before = _trail(env)
    for name, call in _consent_calls(env, parent, child, consent.id).items():
        assert _code(call) == "representation_ended", name
    assert _trail(env) == before
    assert [c.state for c in list_for(env, child, "")] == [consent_pb2.ACTIVE]


def test_representation_expired_at_majority_cannot_act(env: ConsentEnv) -> None:
    """The relation needs no ending: at 00:00 UTC of the majority date it is over, for the
    consent service's checks and for the one the audit log asks."""
    parent, child = fresh_citizen(), fresh_citizen()
    tomorrow = env.clock().date() + timedelta(days=1)
    register(env, parent, child, majority_date=tomorrow.isoformat())
    consent = request_consent(env, child)
    service = env.consent.service
    grown, by = CitizenId(child), CitizenId(parent)
    assert service.relations.check(by, grown, Scope.HISTORY).kind.value == "parent"
    env.clock.offset = timedelta(days=1, minutes=1)
    try:
        for scope in Scope:
            with pytest.raises(errors.RepresentationEndedError):
                service.relations.check(by, grown, scope)
        for action in (ConsentAction.APPROVE, ConsentAction.REJECT):
            with pytest.raises(errors.RepresentationEndedError):
                service.act(grown, consent.id, action, by=by)
        with pytest.raises(errors.RepresentationEndedError):
            service.list_mine(grown, by=by)
    finally:
        env.clock.offset = timedelta(0)


def test_a_citizen_cannot_act_for_someone_they_do_not_represent(env: ConsentEnv) -> None:
    parent, child, _ = family(env)
    sibling = fresh_citizen()  # the parent's other child: no relation registered
    stranger = fresh_citizen()
    consent = request_consent(env, child)
    other = request_consent(env, sibling)
    before = _trail(env)
    for who, whom, cid in (
        (stranger, child, consent.id),  # a forged acting-for
        (parent, sibling, other.id),  # a relation with one child is not one with another
        (child, parent, consent.id),  # the direction matters
    ):
        for name, call in _consent_calls(env, who, whom, cid).items():
            assert _code(call) == "representation_missing", (name, who == child)
    for garbage in ("12", "079090000001' OR 1=1", "x" * 40):
        assert _code(lambda g=garbage: history(env, stranger, g)) == "invalid_citizen_id"
        assert _code(lambda g=garbage: list_for(env, stranger, g)) == "invalid_citizen_id"
    assert _trail(env) == before
    assert [c.state for c in list_for(env, child, "")] == [consent_pb2.PENDING]


def test_relations_from_anyone_but_the_designated_authority_are_refused(env: ConsentEnv) -> None:
    parent, child, relation = family(env)
    intruder, victim = fresh_citizen(), fresh_citizen()
    tax = authority_api(env, TAX)
    tax_subsystem = env.instance.agency(TAX).subsystem
    fake = consent_pb2.Relation(
        kind=consent_pb2.RELATION_GUARDIAN, representative=intruder, represented=victim
    )
    # Another agency naming itself: not the designated authority.
    assert (
        _code(
            lambda: tax.RegisterRelation(
                consent_pb2.RegisterRelationRequest(authority=tax_subsystem, relation=fake),
                timeout=10,
            )
        )
        == "not_representation_authority"
    )
    # Another agency naming the authority: it does not act for that subsystem.
    for call in (
        lambda: tax.RegisterRelation(
            consent_pb2.RegisterRelationRequest(authority=AUTHORITY, relation=fake), timeout=10
        ),
        lambda: tax.EndRelation(
            consent_pb2.EndRelationRequest(authority=AUTHORITY, relation_id=relation.id),
            timeout=10,
        ),
        lambda: tax.AmendRelation(
            consent_pb2.AmendRelationRequest(
                authority=AUTHORITY,
                relation_id=relation.id,
                relation=consent_pb2.Relation(representative=intruder),
            ),
            timeout=10,
        ),
        lambda: tax.ListRelations(
            consent_pb2.ListRelationsRequest(authority=AUTHORITY, person=child), timeout=10
        ),
    ):
        assert _code(call) == "permission_denied"
    # The portal relaying a citizen: no certificate of the authority.
    portal = representation_api(env)
    assert (
        _code(
            lambda: portal.RegisterRelation(
                consent_pb2.RegisterRelationRequest(authority=AUTHORITY, relation=fake),
                metadata=bearer(env.token(intruder)),
                timeout=10,
            )
        )
        == "peer_not_registered"
    )
    # Even the authority cannot swap the people of a relation by amending it.
    assert (
        _code(
            lambda: authority_api(env).AmendRelation(
                consent_pb2.AmendRelationRequest(
                    authority=AUTHORITY,
                    relation_id=relation.id,
                    relation=consent_pb2.Relation(representative=intruder),
                ),
                timeout=10,
            )
        )
        == "invalid_argument"
    )
    with pytest.raises(errors.RepresentationMissingError):
        env.consent.service.relations.check(CitizenId(intruder), CitizenId(victim), Scope.CONSENTS)
    assert env.consent.service.relations.check(CitizenId(parent), CitizenId(child), Scope.CONSENTS)


def test_only_the_audit_log_may_ask_who_represents_whom(env: ConsentEnv) -> None:
    parent, child, _ = family(env)
    ask = consent_pb2.CheckRepresentationRequest(
        representative=parent, represented=child, scope=consent_pb2.SCOPE_HISTORY
    )
    for identity in (
        env.instance.stack.service_identity("portal"),
        env.client_identity(TAX),
        env.server_identity(TAX),
    ):
        api = representation_api(env, identity)
        assert _code(lambda api=api: api.CheckRepresentation(ask, timeout=10)) == (
            "permission_denied"
        )
    client = RepresentationClient(env.consent.address, env.instance.stack.service_identity("audit"))
    try:
        grant = client.check(CitizenId(parent), CitizenId(child), Scope.HISTORY)
        assert grant.kind.value == "parent" and grant.ends_at is not None
        with pytest.raises(errors.RepresentationMissingError):
            client.check(CitizenId(child), CitizenId(parent), Scope.HISTORY)
    finally:
        client.close()


def test_representation_data_at_rest_holds_no_national_id(env: ConsentEnv) -> None:
    parent, child, relation = family(env)
    guardian, ward = fresh_citizen(), fresh_citizen()
    names = ("Trần Văn Giám", "Lê Thị Hộ")
    register(
        env,
        guardian,
        ward,
        kind=consent_pb2.RELATION_GUARDIAN,
        representative_name=names[0],
        represented_name=names[1],
        reference="court decision 7/2026",
    )
    consent = request_consent(env, child)
    act_for(env, parent, child, "Approve", consent.id)
    end(env, relation.id)
    people = [parent, child, guardian, ward]
    engine = env.consent.service._engine
    rows = table_bytes(engine)
    assert b"relations" in rows and b"relation_events" in rows  # the test sees the tables
    assert ids_found(rows, people) == []
    for text in (*names, "court decision"):
        assert text.encode() not in rows
    if env.db_schema:
        files = postgres_file_bytes(engine, env.db_schema)
    else:
        assert engine.url.database
        files = sqlite_file_bytes(Path(engine.url.database))
    assert ids_found(files, people) == []
    assert all(text.encode() not in files for text in names)


def test_consent_events_never_name_a_representative_by_national_id(env: ConsentEnv) -> None:
    parent, child, relation = family(env)
    consent = request_consent(env, child)
    service = env.consent.service
    before = _trail(env)[0]
    for actor in (
        f"representative:parent:{parent}",  # an id where the relation goes
        "representative:parent",  # the public form: events name the relation
        f"representative:stepfather:{relation.id}",  # not a kind of relation
        f"representative:parent:{relation.id}:{parent}",  # a "subsystem" nobody registered
        f"VN:GOV:BCA:{parent}",
    ):
        with pytest.raises(errors.InvalidArgumentError):
            service.act(CitizenId(child), consent.id, ConsentAction.REJECT, actor=actor)
    assert _trail(env)[0] == before
