"""Data-subject requests over real gRPC/mTLS on SQLite and PostgreSQL: a citizen files, the
agency addressed works its queue with its subsystem certificate, inspectors see what is
overdue (the consent service's clock is the injected one) and work complaints.

One instance per database, shared by the module; each test uses its own citizens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from cdx import crypto, db, errors, rpc
from cdx.clock import utcnow
from cdx.ids import CitizenId
from cdx.v1 import consent_pb2
from consent.requestpolicy import RequestKind
from consent.requests import SubjectRequestService
from consent.sealing import DataKeys
from consent.server import migrate_consent_db
from consent.workdays import WorkingCalendar
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    POPULATION,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    consent_env_fixture,
    fresh_citizen,
)
from tests.integration.requests_env import (
    TAX_SUBSYSTEM,
    agency_act,
    citizen_requests,
    file_request,
    inspector_requests,
    my_request,
    queue_of,
)

env = consent_env_fixture("subject-requests")


def code_of(exc: grpc.RpcError) -> str:
    return rpc.error_from_rpc(exc).code


@contextmanager
def consent_clock_moved(env: ConsentEnv, offset: timedelta) -> Iterator[None]:
    """Run with the consent service's clock moved by ``offset`` (tokens minted for it)."""
    env.clock.offset = offset
    try:
        yield
    finally:
        env.clock.offset = timedelta(0)


def test_an_objection_goes_to_the_agency_and_is_answered_within_the_deadline(
    env: ConsentEnv,
) -> None:
    citizen = fresh_citizen()
    filed = file_request(env, citizen, details="Please stop using my income for benefits.")
    assert filed.state == consent_pb2.REQUEST_RECEIVED
    assert filed.kind == consent_pb2.REQUEST_OBJECTION
    assert filed.acknowledge_by_ms > filed.received_at_ms
    assert filed.complete_by_ms - filed.received_at_ms > timedelta(days=15) / timedelta(
        milliseconds=1
    )
    assert [s.action for s in filed.steps] == ["received"]
    assert filed.steps[0].text == "Please stop using my income for benefits."

    # The agency's queue: with the citizen, so it can act on its data.
    (queued,) = [r for r in queue_of(env, SOCIAL, SOCIAL_SUBSYSTEM) if r.id == filed.id]
    assert queued.subject == citizen and queued.purpose == CONSENT_PURPOSE
    acknowledged = agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    assert acknowledged.state == consent_pb2.REQUEST_ACKNOWLEDGED
    assert acknowledged.steps[-1].actor == SOCIAL_SUBSYSTEM
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_START)
    answer = "Your income is no longer used for benefit checks from today."
    done = agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_COMPLETE, answer)
    assert done.state == consent_pb2.REQUEST_COMPLETED
    assert filed.received_at_ms <= done.closed_at_ms < done.complete_by_ms
    assert done.overdue == ""

    # The citizen sees every step and the answer.
    seen = my_request(env, citizen, filed.id)
    assert [s.action for s in seen.steps] == [
        "received",
        "acknowledged",
        "in_progress",
        "completed",
    ]
    assert seen.steps[-1].text == answer and seen.steps[-1].actor == SOCIAL_SUBSYSTEM
    assert all(s.record_id for s in seen.steps)
    assert filed.id not in {r.id for r in queue_of(env, SOCIAL, SOCIAL_SUBSYSTEM)}  # done


def test_an_extension_moves_the_deadline_once_and_needs_a_reason(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    filed = file_request(env, citizen, consent_pb2.REQUEST_ERASURE, purpose="")
    agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    with pytest.raises(grpc.RpcError) as no_reason:
        agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_EXTEND)
    assert code_of(no_reason.value) == "reason_required"
    extended = agency_act(
        env, SOCIAL, filed.id, consent_pb2.REQUEST_EXTEND, "The archive copy is off site."
    )
    assert extended.extended
    assert extended.complete_by_ms - filed.complete_by_ms == 15 * 24 * 3600 * 1000
    with pytest.raises(grpc.RpcError) as twice:
        agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_EXTEND, "Still off site.")
    assert code_of(twice.value) == "invalid_transition"
    refused = agency_act(
        env, SOCIAL, filed.id, consent_pb2.REQUEST_REFUSE, "The law obliges us to keep it."
    )
    assert refused.state == consent_pb2.REQUEST_REFUSED
    with pytest.raises(grpc.RpcError) as after:
        citizen_requests(env).Withdraw(
            consent_pb2.SubjectRequestId(request_id=filed.id),
            metadata=bearer(env.token(citizen)),
            timeout=10,
        )
    assert code_of(after.value) == "invalid_transition"


def test_an_overdue_request_appears_on_the_inspectors_list(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    # Filed a week ago (the consent service's injected clock): 5 weekdays have passed since.
    week_ago = timedelta(days=-7)
    with consent_clock_moved(env, week_ago):
        late = file_request(
            env,
            citizen,
            addressee=TAX_SUBSYSTEM,
            purpose="TAX_ASSESSMENT",
            token=env.token(citizen, now=utcnow() + week_ago),
        )
    fresh = file_request(env, citizen, addressee=TAX_SUBSYSTEM, purpose="TAX_ASSESSMENT")
    inspectors = inspector_requests(env)

    overdue = {r.id: r for r in inspectors.ListOverdue(consent_pb2.ListOverdueRequest()).requests}
    assert late.id in overdue and fresh.id not in overdue
    listed = overdue[late.id]
    assert listed.overdue == "acknowledgement" and listed.addressee == TAX_SUBSYSTEM
    assert listed.subject == ""  # inspectors learn no citizen from the list, and no text
    assert [s.action for s in listed.steps] == ["received"] and not listed.steps[0].text
    assert [r.id for r in queue_of(env, TAX, TAX_SUBSYSTEM, overdue_only=True)] == [late.id]

    # Acknowledged late is still acknowledged: off the list until completion falls due.
    agency_act(env, TAX, late.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    overdue_now = inspectors.ListOverdue(consent_pb2.ListOverdueRequest()).requests
    assert late.id not in {r.id for r in overdue_now}

    # Filed three weeks ago and acknowledged in time, but never completed.
    three_weeks_ago = timedelta(days=-21)
    with consent_clock_moved(env, three_weeks_ago):
        stalled = file_request(
            env,
            citizen,
            addressee=TAX_SUBSYSTEM,
            purpose="TAX_ASSESSMENT",
            token=env.token(citizen, now=utcnow() + three_weeks_ago),
        )
        agency_act(env, TAX, stalled.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    later = inspectors.ListOverdue(consent_pb2.ListOverdueRequest()).requests
    assert {r.id: r.overdue for r in later}.get(stalled.id) == "completion"


def test_inspectors_work_complaints(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    complaint = file_request(
        env,
        citizen,
        consent_pb2.REQUEST_COMPLAINT,
        addressee="",
        purpose="",
        details="The tax department read my data without a reason I know of.",
    )
    inspectors = inspector_requests(env)
    listed = inspectors.ListComplaints(consent_pb2.ListComplaintsRequest()).requests
    (mine,) = [r for r in listed if r.id == complaint.id]
    assert mine.subject == citizen and "tax department" in mine.steps[0].text
    act = consent_pb2.ActOnRequestRequest
    inspectors.ActOnComplaint(act(request_id=complaint.id, action=consent_pb2.REQUEST_ACKNOWLEDGE))
    done = inspectors.ActOnComplaint(
        act(
            request_id=complaint.id,
            action=consent_pb2.REQUEST_COMPLETE,
            text="We checked: the access was under the tax law.",
        )
    )
    assert done.state == consent_pb2.REQUEST_COMPLETED
    assert done.steps[-1].actor == "inspector:inspector"
    # An agency cannot touch a complaint, nor an inspector an agency's request.
    with pytest.raises(grpc.RpcError) as agency:
        agency_act(env, SOCIAL, complaint.id, consent_pb2.REQUEST_ACKNOWLEDGE)
    assert agency.value.code() == grpc.StatusCode.NOT_FOUND
    objection = file_request(env, citizen)
    with pytest.raises(grpc.RpcError) as inspector:
        inspectors.ActOnComplaint(
            act(request_id=objection.id, action=consent_pb2.REQUEST_ACKNOWLEDGE)
        )
    assert inspector.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"kind": consent_pb2.REQUEST_OBJECTION, "addressee": "", "purpose": CONSENT_PURPOSE},
         "invalid_argument"),
        ({"kind": consent_pb2.REQUEST_OBJECTION, "addressee": SOCIAL_SUBSYSTEM, "purpose": ""},
         "invalid_argument"),
        ({"kind": consent_pb2.REQUEST_OBJECTION, "addressee": "VN:GOV:NOPE:x",
          "purpose": CONSENT_PURPOSE}, "not_found"),
        ({"kind": consent_pb2.REQUEST_OBJECTION, "addressee": SOCIAL_SUBSYSTEM,
          "purpose": "NOT_A_PURPOSE"}, "not_found"),
        ({"kind": consent_pb2.REQUEST_OBJECTION, "addressee": "not an id",
          "purpose": CONSENT_PURPOSE}, "invalid_identifier"),
        ({"kind": consent_pb2.REQUEST_ERASURE, "addressee": SOCIAL_SUBSYSTEM,
          "service": "VN:GOV:GDT:income/nothing/v1"}, "unknown_service"),
        ({"kind": consent_pb2.REQUEST_COMPLAINT, "details": "  "}, "reason_required"),
        ({"kind": consent_pb2.REQUEST_RECTIFICATION, "addressee": SOCIAL_SUBSYSTEM},
         "reason_required"),
        ({"kind": consent_pb2.REQUEST_COMPLAINT, "details": "a\x00b"}, "unsafe_characters"),
        ({"kind": consent_pb2.REQUEST_COMPLAINT, "details": "x" * 5000}, "limit_exceeded"),
        ({"kind": consent_pb2.REQUEST_ACCESS, "purpose": CONSENT_PURPOSE}, "invalid_argument"),
        ({"kind": consent_pb2.REQUEST_COMPLAINT, "addressee": SOCIAL_SUBSYSTEM,
          "details": "x"}, "invalid_argument"),
        ({"kind": 0}, "invalid_argument"),
        ({"kind": 99}, "invalid_argument"),
    ],
)  # fmt: skip
def test_malformed_requests_are_refused_each_with_its_code(
    env: ConsentEnv, fields: dict[str, object], code: str
) -> None:
    citizen = fresh_citizen()
    with pytest.raises(grpc.RpcError) as refused:
        citizen_requests(env).FileRequest(
            consent_pb2.FileRequestRequest(**fields),  # type: ignore[arg-type]
            metadata=bearer(env.token(citizen)),
            timeout=10,
        )
    assert code_of(refused.value) == code
    listed = citizen_requests(env).ListMyRequests(
        consent_pb2.ListMyRequestsRequest(), metadata=bearer(env.token(citizen)), timeout=10
    )
    assert list(listed.requests) == []


def test_requests_name_the_service_and_any_agency_holding_data(env: ConsentEnv) -> None:
    citizen = fresh_citizen()
    filed = file_request(
        env,
        citizen,
        consent_pb2.REQUEST_RECTIFICATION,
        addressee=TAX_SUBSYSTEM,
        purpose="",
        service=TAX_SERVICE,
        details="My 2025 income is wrong: 120 million, not 210.",
    )
    assert filed.service == TAX_SERVICE and filed.addressee == TAX_SUBSYSTEM
    assert [r.id for r in queue_of(env, TAX, TAX_SUBSYSTEM) if r.id == filed.id] == [filed.id]
    assert filed.id not in {r.id for r in queue_of(env, POPULATION, "VN:GOV:BCA:population")}


def test_a_data_key_rotation_reseals_requests_and_the_retired_key_shreds_them(
    env: ConsentEnv, tmp_path: Path
) -> None:
    engine = db.create_engine(db.sqlite_url(tmp_path / "rotation.db"))
    first, second = os.urandom(32), os.urandom(32)

    def service(keys: DataKeys) -> SubjectRequestService:
        return SubjectRequestService(
            engine,
            signer=crypto.KeySigner(env.signing_key),
            tag_key=env.tag_key,
            data_keys=keys,
            conf=env.conf_client.current,
            calendar=WorkingCalendar(),
        )

    try:
        migrate_consent_db(engine, DataKeys(first))
        alice = CitizenId(fresh_citizen())
        filed = service(DataKeys(first)).file(
            alice, RequestKind.COMPLAINT, details="Who read my tax data?"
        )
        assert service(DataKeys(second, [first])).reseal(batch=1) == 1
        assert service(DataKeys(second, [first])).reseal() == 0  # nothing left to move
        after = service(DataKeys(second)).get_mine(alice, filed.id)  # the first key is gone
        assert after.steps[0].text == "Who read my tax data?" and after.subject == alice
        with pytest.raises(errors.KeyStoreError):
            service(DataKeys(first)).get_mine(alice, filed.id)
    finally:
        engine.dispose()
