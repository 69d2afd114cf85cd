"""Attacks on data-subject requests (threat model T330-T339), against a real consent service
on SQLite and PostgreSQL (and, for access bundles, a whole instance with its audit log): other
citizens, other agencies and other roles reach nothing; one citizen cannot flood an agency;
nothing at rest names the citizen or quotes them; another citizen's history cannot be passed
off as mine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from cdx import db, rpc
from cdx.v1 import audit_pb2, consent_pb2, consent_pb2_grpc
from consent.requests import MAX_OPEN_PER_SUBJECT
from tests.e2e.portal_env import CITIZEN_A, PortalEnv, play_demo_scenario, start_portal_env
from tests.integration.consent_env import (
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX,
    ConsentEnv,
    bearer,
    consent_env_fixture,
    fresh_citizen,
)
from tests.integration.requests_env import (
    TAX_SUBSYSTEM,
    access_evidence,
    agency_act,
    agency_requests,
    citizen_requests,
    file_request,
    inspector_requests,
    my_request,
    queue_of,
)
from tests.security.at_rest import ids_found, table_bytes

env = consent_env_fixture("attack-requests")


def code_of(exc: grpc.RpcError) -> str:
    return rpc.error_from_rpc(exc).code


def refused(call: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10, **kw)
    return caught.value


def test_another_citizen_cannot_see_or_act_on_my_requests(env: ConsentEnv) -> None:
    alice, mallory = fresh_citizen(), fresh_citizen()
    objection = file_request(env, alice, details="Alice's private reasons.")
    access = file_request(env, alice, consent_pb2.REQUEST_ACCESS, addressee="", purpose="")
    api = citizen_requests(env)
    as_mallory = bearer(env.token(mallory))
    for request_id in (objection.id, access.id):
        target = consent_pb2.SubjectRequestId(request_id=request_id)
        for method in (api.GetMyRequest, api.Withdraw, api.GetAccessBundle):
            assert refused(method, target, metadata=as_mallory).code() == grpc.StatusCode.NOT_FOUND
        evidence = consent_pb2.CompleteAccessRequest(request_id=request_id, checkpoint_note="x")
        assert refused(api.CompleteAccess, evidence, metadata=as_mallory).code() == (
            grpc.StatusCode.NOT_FOUND
        )
    mine = api.ListMyRequests(consent_pb2.ListMyRequestsRequest(), metadata=as_mallory, timeout=10)
    assert list(mine.requests) == []
    # Alice's requests are untouched, her words unseen.
    assert my_request(env, alice, objection.id).state == consent_pb2.REQUEST_RECEIVED
    assert my_request(env, alice, access.id).state == consent_pb2.REQUEST_RECEIVED


def test_an_agency_sees_and_moves_only_requests_addressed_to_it(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    to_social = file_request(env, citizen)
    tax = agency_requests(env, TAX)
    target = consent_pb2.SubjectRequestId(request_id=to_social.id)
    # The tax department's subsystem certificate: another agency's queue is not its own.
    assert refused(
        tax.ListQueue, consent_pb2.ListQueueRequest(addressee=SOCIAL_SUBSYSTEM)
    ).code() == (grpc.StatusCode.PERMISSION_DENIED)
    assert to_social.id not in {r.id for r in queue_of(env, TAX, TAX_SUBSYSTEM)}
    assert refused(tax.GetRequest, target).code() == grpc.StatusCode.NOT_FOUND
    for action in (consent_pb2.REQUEST_ACKNOWLEDGE, consent_pb2.REQUEST_REFUSE):
        act = consent_pb2.ActOnRequestRequest(request_id=to_social.id, action=action, text="no")
        assert refused(tax.Act, act).code() == grpc.StatusCode.NOT_FOUND
    # Nor its security server's auth certificate (it hosts the tax subsystem only).
    server = consent_pb2_grpc.AgencyRequestsStub(env.channel(env.server_identity(TAX)))
    assert refused(server.GetRequest, target).code() == grpc.StatusCode.NOT_FOUND
    # A step only the citizen takes is not an agency's.
    social = agency_requests(env, SOCIAL)
    withdraw = consent_pb2.ActOnRequestRequest(request_id=to_social.id, action=99)
    assert code_of(refused(social.Act, withdraw)) == "invalid_argument"
    assert my_request(env, citizen, to_social.id).state == consent_pb2.REQUEST_RECEIVED
    assert to_social.id in {r.id for r in queue_of(env, SOCIAL, SOCIAL_SUBSYSTEM)}


def test_only_inspectors_see_the_overdue_list_and_work_complaints(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    complaint = file_request(
        env, citizen, consent_pb2.REQUEST_COMPLAINT, addressee="", purpose="", details="Help."
    )
    overdue = consent_pb2.ListOverdueRequest()
    ack = consent_pb2.ActOnRequestRequest(
        request_id=complaint.id, action=consent_pb2.REQUEST_ACKNOWLEDGE
    )
    # An agency's certificate is not an inspector's.
    as_agency = consent_pb2_grpc.InspectorRequestsStub(env.channel(env.client_identity(SOCIAL)))
    assert refused(as_agency.ListOverdue, overdue).code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused(as_agency.ActOnComplaint, ack).code() == grpc.StatusCode.PERMISSION_DENIED
    # A citizen's token relayed by the portal is not an inspector's.
    portal = consent_pb2_grpc.InspectorRequestsStub(
        env.channel(env.instance.stack.service_identity("portal"))
    )
    as_citizen = bearer(env.token(citizen))
    assert refused(
        portal.ListComplaints, consent_pb2.ListComplaintsRequest(), metadata=as_citizen
    ).code() == (grpc.StatusCode.PERMISSION_DENIED)
    # An inspector's token relayed by anyone but the portal is refused.
    inspector_token = bearer(env.token("dpa-inspector-9", role="inspector"))
    assert refused(as_agency.ListOverdue, overdue, metadata=inspector_token).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # The citizens' public port does not serve the inspectors' API at all.
    public = consent_pb2_grpc.InspectorRequestsStub(env.channel(None, public=True))
    assert refused(public.ListOverdue, overdue, metadata=inspector_token).code() == (
        grpc.StatusCode.UNIMPLEMENTED
    )
    assert my_request(env, citizen, complaint.id).state == consent_pb2.REQUEST_RECEIVED
    # Relayed by the portal, an inspector's token works, and is named by a pseudonym.
    done = portal.ActOnComplaint(ack, metadata=inspector_token, timeout=10)
    assert done.state == consent_pb2.REQUEST_ACKNOWLEDGED
    assert done.steps[-1].actor.startswith("inspector:token:")
    assert "dpa-inspector-9" not in done.steps[-1].actor


def test_one_citizen_cannot_flood_an_agencys_queue(env: ConsentEnv) -> None:
    flooder, other = fresh_citizen(), fresh_citizen()
    token = env.token(flooder)
    for _ in range(MAX_OPEN_PER_SUBJECT):
        file_request(env, flooder, token=token)
    assert (
        code_of(
            refused(
                citizen_requests(env).FileRequest,
                consent_pb2.FileRequestRequest(
                    kind=consent_pb2.REQUEST_ERASURE, addressee=SOCIAL_SUBSYSTEM
                ),
                metadata=bearer(token),
            )
        )
        == "limit_exceeded"
    )
    assert file_request(env, other).state == consent_pb2.REQUEST_RECEIVED  # others unaffected
    # Answered requests free the citizen's quota again.
    first = next(r for r in queue_of(env, SOCIAL, SOCIAL_SUBSYSTEM) if r.subject == flooder)
    agency_act(env, SOCIAL, first.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    agency_act(env, SOCIAL, first.id, consent_pb2.REQUEST_REFUSE, "Duplicate of another request.")
    assert file_request(env, flooder, token=token).state == consent_pb2.REQUEST_RECEIVED


def test_requests_at_rest_name_no_citizen_and_quote_nothing(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    marker = f"secret-words-{citizen}-end"
    filed = file_request(
        env, citizen, consent_pb2.REQUEST_RECTIFICATION, purpose="", details=marker
    )
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_COMPLETE, f"fixed {marker}")
    engine = db.create_engine(env.db_url, schema=env.db_schema)
    try:
        stored = table_bytes(engine)
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM subject_requests")).scalar()
    finally:
        engine.dispose()
    assert count and count >= 1
    assert ids_found(stored, [citizen]) == []
    assert b"secret-words" not in stored
    # The service still has it all, for those who may see it.
    assert my_request(env, citizen, filed.id).steps[-1].text == f"fixed {marker}"


@pytest.mark.parametrize("request_id", ["", "\x00", "x" * 5000, "../../etc", "'; DROP TABLE x"])
def test_hostile_request_ids_are_not_found_never_a_crash(env: ConsentEnv, request_id: str) -> None:
    citizen = fresh_citizen()
    api = citizen_requests(env)
    target = consent_pb2.SubjectRequestId(request_id=request_id)
    assert refused(api.GetMyRequest, target, metadata=bearer(env.token(citizen))).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    act = consent_pb2.ActOnRequestRequest(request_id=request_id, action=1)
    assert refused(agency_requests(env, SOCIAL).Act, act).code() == grpc.StatusCode.NOT_FOUND
    assert refused(inspector_requests(env).GetComplaint, target).code() == grpc.StatusCode.NOT_FOUND


# --- access bundles: another citizen's history ---------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    penv = start_portal_env(tmp_path_factory.mktemp("attack-bundle"))
    try:
        play_demo_scenario(penv)
        yield penv
    finally:
        penv.close()


def test_another_citizens_history_cannot_become_my_bundle(world: PortalEnv) -> None:
    from tests.waiting import eventually

    env = world.consent_env
    mallory = fresh_citizen()
    eventually(
        lambda: len(access_evidence(env, CITIZEN_A, "-").entries) >= 4,
        timeout=60,
        what="the scenario's accesses in a cosigned checkpoint",
    )
    stolen = access_evidence(env, CITIZEN_A, "-")  # as if the portal relayed Alice's history
    mine = file_request(env, mallory, consent_pb2.REQUEST_ACCESS, addressee="", purpose="")
    stolen.request_id = mine.id
    api = citizen_requests(env)
    caught = refused(api.CompleteAccess, stolen, metadata=bearer(env.token(mallory)))
    assert code_of(caught) == "verification_failed"
    # Alice's entries with Mallory's salts do not open to Mallory either: nothing is signed.
    for entry in stolen.entries:
        entry.subject_salt = bytes(32)
    assert code_of(refused(api.CompleteAccess, stolen, metadata=bearer(env.token(mallory)))) == (
        "verification_failed"
    )
    assert my_request(env, mallory, mine.id).state == consent_pb2.REQUEST_RECEIVED
    assert not my_request(env, mallory, mine.id).bundle_ready


def test_a_forged_checkpoint_cannot_vouch_for_a_bundle(world: PortalEnv) -> None:
    env = world.consent_env
    citizen = fresh_citizen()
    request = file_request(env, citizen, consent_pb2.REQUEST_ACCESS, addressee="", purpose="")
    evidence = access_evidence(env, CITIZEN_A, request.id)
    lines = evidence.checkpoint_note.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # a bigger tree than the log signed
    forged = consent_pb2.CompleteAccessRequest(
        request_id=request.id, checkpoint_note="\n".join(lines)
    )
    caught = refused(
        citizen_requests(env).CompleteAccess, forged, metadata=bearer(env.token(citizen))
    )
    assert code_of(caught) == "invalid_note_signature"
    assert my_request(env, citizen, request.id).state == consent_pb2.REQUEST_RECEIVED


def test_request_steps_in_the_log_name_no_citizen_and_quote_nothing(world: PortalEnv) -> None:
    from tests.waiting import eventually

    env = world.consent_env
    citizen = fresh_citizen()
    words = f"my-own-words-{citizen}"
    filed = file_request(env, citizen, details=words)
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_COMPLETE, f"answer to {words}")

    def leaves() -> list[bytes]:
        history = env.instance.stack.citizen_audit().CitizenHistory(
            audit_pb2.CitizenHistoryRequest(limit=100),
            metadata=bearer(env.token(citizen)),
            timeout=10,
        )
        return [e.entry.record.SerializeToString() for e in history.entries]

    eventually(lambda: len(leaves()) == 3, what="the three steps in the log")
    public = b"".join(leaves())
    assert ids_found(public, [citizen]) == [] and b"my-own-words" not in public
