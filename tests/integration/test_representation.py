"""Legal representation over real servers (registry, consent service, audit log; SQLite and
PostgreSQL): the authority registers, amends, lists and ends relations; a parent approves,
pauses and revokes their child's consents and reads their history; every consent event and the
history read record who acted for whom, and the child sees it; a minor's own approval does not
count; representation of a minor ends at majority by itself."""

from __future__ import annotations

import re
from datetime import timedelta

import grpc
import pytest
import sqlalchemy as sa

from cdx.consentpolicy import ConsentAction, ConsentState
from cdx.ids import CitizenId
from cdx.representation import RelationKind, Scope
from cdx.rpc import ERROR_CODE_KEY
from cdx.v1 import audit_pb2, consent_pb2
from consent import relation_store
from tests.integration.consent_env import (
    ConsentEnv,
    act,
    bearer,
    fresh_citizen,
    request_consent,
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
from tests.waiting import eventually

env = representation_env_fixture("representation")
RELATION_ACTOR = re.compile(r"representative:parent:[0-9a-f]{8}-[0-9a-f-]{27}")


def _code(info: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return dict(info.value.trailing_metadata() or ()).get(ERROR_CODE_KEY, "")


# --- the authority -------------------------------------------------------------------------------


def test_the_authority_registers_amends_lists_and_ends_relations(env: ConsentEnv) -> None:
    parent, child = fresh_citizen(), fresh_citizen()
    relation = register(env, parent, child, represented_name="Nguyễn Minh Khang")
    assert relation.in_force and relation.authority == AUTHORITY
    assert list(relation.scopes) == [consent_pb2.SCOPE_HISTORY, consent_pb2.SCOPE_CONSENTS]
    assert relation.ends_at_ms  # a minor's representation ends at majority
    api = authority_api(env)
    amended = api.AmendRelation(
        consent_pb2.AmendRelationRequest(
            authority=AUTHORITY,
            relation_id=relation.id,
            relation=consent_pb2.Relation(reference="birth registration 12/2019"),
            set_fields=["reference"],
        ),
        timeout=10,
    )
    assert amended.version == 2 and amended.reference == "birth registration 12/2019"
    assert amended.represented_name == "Nguyễn Minh Khang"  # untouched fields keep their value
    listed = api.ListRelations(
        consent_pb2.ListRelationsRequest(authority=AUTHORITY, person=child), timeout=10
    )
    assert [r.id for r in listed.relations] == [relation.id]
    ended = end(env, relation.id)
    assert not ended.in_force and ended.ended_at_ms and ended.version == 3
    with pytest.raises(grpc.RpcError) as again:
        end(env, relation.id)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    engine = env.consent.service._engine
    with engine.connect() as conn:
        actions = [e.action for e in relation_store.events_of(conn, relation.id)]
    assert actions == ["registered", "amended", "ended"]


def test_relation_events_are_append_only(env: ConsentEnv) -> None:
    family(env)
    engine = env.consent.service._engine
    for statement in ("UPDATE relation_events SET actor = 'x'", "DELETE FROM relation_events"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(statement)


@pytest.mark.parametrize(
    "relation,why",
    [
        (dict(kind=consent_pb2.RELATION_PARENT, majority_date=""), "parent without majority"),
        (dict(kind=consent_pb2.RELATION_PARENT, majority_date="2001-01-01"), "already adult"),
        (dict(kind=consent_pb2.RELATION_PARENT, majority_date="2999-01-01"), "far majority"),
        (dict(kind=consent_pb2.RELATION_PARENT, majority_date="soon"), "not a date"),
        (dict(kind=consent_pb2.RELATION_AUTHORISED), "authorised without scope"),
        (dict(kind=0), "no kind"),
        (dict(kind=consent_pb2.RELATION_GUARDIAN, represented="12"), "not a national id"),
        (dict(kind=consent_pb2.RELATION_GUARDIAN, same=True), "represents themself"),
        (dict(kind=consent_pb2.RELATION_GUARDIAN, represented_name="x\u202ey"), "bidi name"),
        (dict(kind=consent_pb2.RELATION_GUARDIAN, reference="r" * 300), "long reference"),
    ],
)
def test_malformed_registrations_are_refused_as_invalid(
    env: ConsentEnv, relation: dict[str, object], why: str
) -> None:
    parent = fresh_citizen()
    fields: dict[str, object] = {"representative": parent, "represented": fresh_citizen()}
    given = dict(relation)  # the parameters are shared by both databases' runs
    if given.pop("same", False):
        fields["represented"] = parent
    fields.update(given)
    with pytest.raises(grpc.RpcError) as refused:
        authority_api(env).RegisterRelation(
            consent_pb2.RegisterRelationRequest(
                authority=AUTHORITY, relation=consent_pb2.Relation(**fields)
            ),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, why


# --- acting for a child --------------------------------------------------------------------------


def test_a_parent_approves_pauses_and_revokes_for_their_child(env: ConsentEnv) -> None:
    parent, child, _ = family(env)
    requested = request_consent(env, child)
    assert [c.id for c in list_for(env, parent, child)] == [requested.id]
    approved = act_for(env, parent, child, "Approve", requested.id)
    assert approved.state == consent_pb2.ACTIVE and approved.terms.subject == child
    act_for(env, parent, child, "Pause", requested.id)
    act_for(env, parent, child, "Revoke", requested.id)
    events = act(env, child, "ListEvents", requested.id).events
    assert [e.action for e in events] == ["requested", "approved", "paused", "revoked"]
    for e in events[1:]:
        assert RELATION_ACTOR.fullmatch(e.actor), e.actor
    assert parent not in str(events) and child not in str(events)


def test_the_parent_sees_whom_they_may_act_for_and_the_child_who_may_act_for_them(
    env: ConsentEnv,
) -> None:
    parent, child, relation = family(env)
    api = representation_api(env)
    mine = api.ListRepresented(
        consent_pb2.ListMyRelationsRequest(), metadata=bearer(env.token(parent)), timeout=10
    )
    assert [(r.id, r.represented, r.represented_name) for r in mine.relations] == [
        (relation.id, child, "Khang")
    ]
    theirs = api.ListRepresentatives(
        consent_pb2.ListMyRelationsRequest(), metadata=bearer(env.token(child)), timeout=10
    )
    assert [(r.id, r.representative) for r in theirs.relations] == [(relation.id, parent)]
    end(env, relation.id)
    now_empty = api.ListRepresented(
        consent_pb2.ListMyRelationsRequest(), metadata=bearer(env.token(parent)), timeout=10
    )
    assert list(now_empty.relations) == []
    everything = api.ListRepresented(
        consent_pb2.ListMyRelationsRequest(include_ended=True),
        metadata=bearer(env.token(parent)),
        timeout=10,
    )
    assert [(r.id, r.in_force) for r in everything.relations] == [(relation.id, False)]


def test_a_minors_own_approval_does_not_count_but_a_refusal_does(env: ConsentEnv) -> None:
    parent, child, _ = family(env)
    pending = request_consent(env, child)
    with pytest.raises(grpc.RpcError) as refused:
        act(env, child, "Approve", pending.id)
    assert _code(refused) == "minor_needs_representative"
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert act(env, child, "Reject", pending.id).state == consent_pb2.REJECTED
    another = request_consent(env, child)
    assert act_for(env, parent, child, "Approve", another.id).state == consent_pb2.ACTIVE
    assert act(env, child, "Revoke", another.id).state == consent_pb2.REVOKED  # a withdrawal


def test_a_minor_without_a_representative_in_force_cannot_consent_at_all(
    env: ConsentEnv,
) -> None:
    parent, child, relation = family(env)
    end(env, relation.id)  # e.g. a court removed the parent's rights; still a minor
    pending = request_consent(env, child)
    with pytest.raises(grpc.RpcError) as own:
        act(env, child, "Approve", pending.id)
    assert _code(own) == "minor_needs_representative"
    with pytest.raises(grpc.RpcError) as former:
        act_for(env, parent, child, "Approve", pending.id)
    assert _code(former) == "representation_ended"


def test_representation_of_a_minor_ends_at_majority_and_then_they_decide(
    env: ConsentEnv,
) -> None:
    parent, child = fresh_citizen(), fresh_citizen()
    tomorrow = env.clock().date() + timedelta(days=1)
    register(env, parent, child, majority_date=tomorrow.isoformat())
    pending = request_consent(env, child)
    service = env.consent.service
    adult = CitizenId(child)
    with pytest.raises(Exception) as before:
        service.act(adult, pending.id, ConsentAction.APPROVE)
    assert getattr(before.value, "code", "") == "minor_needs_representative"
    env.clock.offset = timedelta(days=1, hours=1)
    try:
        with pytest.raises(Exception) as after:
            service.act(adult, pending.id, ConsentAction.APPROVE, by=CitizenId(parent))
        assert getattr(after.value, "code", "") == "representation_ended"
        assert service.act(adult, pending.id, ConsentAction.APPROVE).state is ConsentState.ACTIVE
    finally:
        env.clock.offset = timedelta(0)


def test_an_authorised_person_acts_only_in_the_scopes_registered(env: ConsentEnv) -> None:
    helper, adult = fresh_citizen(), fresh_citizen()
    register(
        env,
        helper,
        adult,
        kind=consent_pb2.RELATION_AUTHORISED,
        scopes=(consent_pb2.SCOPE_HISTORY,),
    )
    pending = request_consent(env, adult)
    with pytest.raises(grpc.RpcError) as refused:
        act_for(env, helper, adult, "Approve", pending.id)
    assert _code(refused) == "representation_scope"
    assert history(env, helper, adult).entries is not None  # history is in scope
    grant = env.consent.service.relations.check(CitizenId(helper), CitizenId(adult), Scope.HISTORY)
    assert grant.kind is RelationKind.AUTHORISED and grant.ends_at is None


# --- who acted for whom, in the audit log --------------------------------------------------------


def test_the_child_sees_in_the_log_who_approved_and_who_read_their_history(
    env: ConsentEnv,
) -> None:
    parent, child, _ = family(env)
    pending = request_consent(env, child)
    act_for(env, parent, child, "Approve", pending.id)
    shipped(env)
    history(env, parent, child)  # the parent reads the child's history: that read is logged

    def both_kinds() -> audit_pb2.CitizenHistoryResponse | None:
        page = history(env, child)  # the child's own reads are not entries
        kinds = {e.record.kind for e in page.entries}
        return page if {"consent_event", "representative_access"} <= kinds else None

    own = eventually(both_kinds, timeout=20, what="the child's history covers both entries")
    by_kind: dict[str, list[audit_pb2.AccessRecord]] = {}
    for e in own.entries:
        by_kind.setdefault(e.record.kind, []).append(e.record)
    approvals = [r for r in by_kind["consent_event"] if r.reason_code == "approved"]
    assert [r.actor for r in approvals] == ["representative:parent"]  # no relation id leaves
    assert {r.actor for r in by_kind["representative_access"]} == {"representative:parent"}
    leaves = b"".join(e.entry.record.record for e in own.entries)
    assert parent.encode() not in leaves and child.encode() not in leaves
    read = history(env, parent, child)
    assert read.entries and all(e.opening.subject == child for e in read.entries)
    assert all(e.opening.subject == parent for e in history(env, parent).entries)
