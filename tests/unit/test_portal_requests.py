"""The portal's data-subject request pages over in-memory fakes: filing with field problems,
deadlines and answers, withdrawing, an access request carrying the history the log proves (one
checkpoint, every covered entry, what is left out), the inspector's overdue list and
complaints, isolation between citizens and roles, both languages and accessibility."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from audit import bundles
from cdx import errors
from portal import requests_backend as rb
from portal.app import create_app
from tests.unit.portal_fakes import ALICE, BOB, INSPECTOR, NOW, Harness, csrf_of, harness
from tests.unit.test_portal_a11y import _check

_ids = itertools.count(1)
#: A subsystem the fake global configuration registers (the social insurance agency's).
VSS = "VN:GOV:VSS:vss"


class FakeRequests:
    """``RequestsBackend`` in memory: requests per citizen; access evidence is checked the way
    the consent service checks it, against the fake log's checkpoint."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.requests: dict[str, tuple[str, rb.SubjectRequest]] = {}
        self.evidence: list[rb.AccessEvidence] = []

    def _who(self, token: str, role: str) -> str:
        principal = self.h.idp.verify(token, self.h.world.clock.now)
        if principal.role != role:
            raise errors.PermissionDeniedError()
        return principal.subject

    def _mine(self, token: str, request_id: str) -> rb.SubjectRequest:
        owner, found = self.requests.get(request_id, ("", None))  # type: ignore[assignment]
        if found is None or owner != self._who(token, "citizen"):
            raise errors.NotFoundError()
        return found

    def add(self, owner: str, **kw: Any) -> rb.SubjectRequest:
        now = self.h.world.clock.now
        fields: dict[str, Any] = {
            "id": f"0198a000-0000-7000-8000-{next(_ids):012d}",
            "kind": "objection",
            "state": "RECEIVED",
            "addressee": VSS,
            "purpose": "SOCIAL_BENEFIT",
            "service": "",
            "received_at": now,
            "acknowledge_by": now + timedelta(days=2),
            "complete_by": now + timedelta(days=15),
            "steps": (rb.RequestStep("received", "RECEIVED", now, "citizen", "Please stop."),),
        }
        fields.update(kw)
        request = rb.SubjectRequest(**fields)
        self.requests[request.id] = (owner, request)
        return request

    def file(self, token: str, kind: rb.RequestKindName, **kw: str) -> rb.SubjectRequest:
        owner = self._who(token, "citizen")
        details = kw.pop("details", "")
        step = rb.RequestStep("received", "RECEIVED", self.h.world.clock.now, "citizen", details)
        return self.add(owner, kind=kind, steps=(step,), **kw)

    def list_mine(self, token: str) -> list[rb.SubjectRequest]:
        me = self._who(token, "citizen")
        return [r for owner, r in self.requests.values() if owner == me]

    def get_mine(self, token: str, request_id: str) -> rb.SubjectRequest:
        return self._mine(token, request_id)

    def withdraw(self, token: str, request_id: str) -> rb.SubjectRequest:
        found = self._mine(token, request_id)
        if not found.open:
            raise errors.InvalidTransitionError()
        done = replace(found, state="WITHDRAWN", closed_at=self.h.world.clock.now)
        self.requests[request_id] = (self.requests[request_id][0], done)
        return done

    def complete_access(self, token: str, request_id: str, evidence: rb.AccessEvidence) -> bytes:
        found = self._mine(token, request_id)
        entries = [
            bundles.EvidenceEntry(e.index, e.leaf, e.proof, e.subject_salt, e.request_salt)
            for e in evidence.entries
        ]
        trust = bundles.trust_of(self.h.world.conf)
        bundles.check_evidence(
            evidence.checkpoint_note, entries, trust, self._who(token, "citizen")
        )
        self.evidence.append(evidence)
        done = replace(found, state="COMPLETED", bundle_ready=True)
        self.requests[request_id] = (self.requests[request_id][0], done)
        return b'{"format": "cdx-access-bundle/v1"}'

    def access_bundle(self, token: str, request_id: str) -> bytes:
        if not self._mine(token, request_id).bundle_ready:
            raise errors.NotFoundError()
        return b'{"format": "cdx-access-bundle/v1"}'

    def overdue(self, token: str) -> list[rb.SubjectRequest]:
        self._who(token, "inspector")
        now = self.h.world.clock.now
        return [
            replace(r, overdue="acknowledgement", steps=())
            for _, r in self.requests.values()
            if r.state == "RECEIVED" and now >= r.acknowledge_by
        ]

    def complaints(self, token: str) -> list[rb.SubjectRequest]:
        self._who(token, "inspector")
        return [r for _, r in self.requests.values() if r.kind == "complaint" and r.open]

    def complaint(self, token: str, request_id: str) -> rb.SubjectRequest:
        self._who(token, "inspector")
        owner, found = self.requests.get(request_id, ("", None))  # type: ignore[assignment]
        if found is None or found.kind != "complaint":
            raise errors.NotFoundError()
        return replace(found, subject=owner)

    def act_on_complaint(
        self, token: str, request_id: str, action: rb.HandlerAction, text: str = ""
    ) -> rb.SubjectRequest:
        found = self.complaint(token, request_id)
        state = {"acknowledge": "ACKNOWLEDGED", "start": "IN_PROGRESS"}.get(action, "COMPLETED")
        step = rb.RequestStep(action + "d", state, self.h.world.clock.now, "inspector:x", text)  # type: ignore[arg-type]
        done = replace(found, state=state, steps=(*found.steps, step))  # type: ignore[arg-type]
        self.requests[request_id] = (self.requests[request_id][0], done)
        return done


@pytest.fixture
def h() -> Harness:
    return harness()


@pytest.fixture
def fake(h: Harness) -> FakeRequests:
    return FakeRequests(h)


def client_of(h: Harness, fake: FakeRequests) -> TestClient:
    app = create_app(
        h.config,
        h.consent,
        h.audit,
        h.idp,
        h.conf_source,
        h.world.clock,
        sessions=h.sessions,
        requests=fake,
    )
    return TestClient(app, base_url="https://portal.test", follow_redirects=False)


def test_a_citizen_files_an_objection_and_follows_it(h: Harness, fake: FakeRequests) -> None:
    client = client_of(h, fake)
    h.login(client, ALICE)
    page = client.get("/me/requests")
    assert page.status_code == 200 and "Make a request" in page.text
    filed = client.post(
        "/me/requests",
        data={
            "csrf_token": csrf_of(page.text),
            "kind": "objection",
            "addressee": VSS,
            "purpose": "SOCIAL_BENEFIT",
            "details": "Do not use my data for benefits.",
        },
    )
    assert filed.status_code == 303
    detail = client.get(filed.headers["location"])
    assert "Objection" in detail.text and "Bảo hiểm xã hội Việt Nam" in detail.text
    assert "Do not use my data for benefits." in detail.text
    assert "Acknowledge by" in detail.text and "Answer by" in detail.text
    (_, request) = next(iter(fake.requests.values()))
    assert request.kind == "objection" and request.addressee == VSS

    # The agency answers (in the consent service); the citizen sees the answer and its author.
    answered = replace(
        request,
        state="COMPLETED",
        closed_at=NOW,
        steps=(
            *request.steps,
            rb.RequestStep("completed", "COMPLETED", NOW, VSS, "We stopped on 2 June."),
        ),
    )
    fake.requests[request.id] = (ALICE, answered)
    detail = client.get(f"/me/requests/{request.id}")
    assert "We stopped on 2 June." in detail.text and "Completed" in detail.text
    assert "Withdraw this request" not in detail.text


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"kind": "objection", "addressee": VSS}, "purpose", "names the purpose"),
        ({"kind": "objection", "purpose": "SOCIAL_BENEFIT"}, "addressee", "choose the agency"),
        ({"kind": "erasure", "addressee": "VN:GOV:NOPE:x"}, "addressee", "choose the agency"),
        ({"kind": "complaint"}, "details", "describe what you ask for"),
        ({"kind": "rectification", "addressee": VSS}, "details", "describe what you ask for"),
        ({"kind": "access"}, "kind", "choose what you ask for"),
        ({"kind": "erasure", "addressee": VSS, "details": "x" * 4001}, "details", "at most 4000"),
        ({"kind": "erasure", "addressee": VSS, "purpose": "GOSSIP"}, "purpose", "from the list"),
    ],
)
def test_form_problems_are_shown_on_their_fields_and_nothing_is_filed(
    h: Harness, fake: FakeRequests, form: dict[str, str], field: str, message: str
) -> None:
    client = client_of(h, fake)
    h.login(client, ALICE)
    token = csrf_of(client.get("/me/requests").text)
    response = client.post("/me/requests", data={"csrf_token": token, **form})
    assert response.status_code == 400
    assert f'href="#f-{field}"' in response.text and message in response.text
    assert 'aria-invalid="true"' in response.text
    assert fake.requests == {}
    _check(response.text, "request form with problems")


def test_an_access_request_carries_the_proven_history_and_offers_the_bundle(
    h: Harness, fake: FakeRequests
) -> None:
    h.world.record(ALICE)
    h.world.record(BOB)
    h.world.record(ALICE, client="VN:GOV:GDT:income", decision="DENY", reason="consent_missing")
    h.world.publish()
    h.world.record(ALICE)  # after the checkpoint: nothing to prove it with yet
    client = client_of(h, fake)
    h.login(client, ALICE)
    token = csrf_of(client.get("/me/requests").text)
    response = client.post("/me/requests/access", data={"csrf_token": token})
    assert response.status_code == 303
    (evidence,) = fake.evidence
    assert len(evidence.entries) == 4 and evidence.omitted == 2  # both sides of each exchange
    assert evidence.checkpoint_note == h.world.checkpoint_note
    detail = client.get(response.headers["location"])
    assert "Download the signed bundle" in detail.text
    assert "cdx audit bundle verify" in detail.text and "--quorum 2" in detail.text
    download = client.get(response.headers["location"] + "/bundle.json")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.content.startswith(b'{"format"')


def test_evidence_from_pages_with_a_newer_checkpoint_is_proven_in_the_first(
    h: Harness, fake: FakeRequests
) -> None:
    for _ in range(3):
        h.world.record(ALICE)
    h.world.publish()
    client = client_of(h, fake)
    h.login(client, ALICE)
    original = h.audit.citizen_history

    def paged(token: str, limit: int, before_index: int = 0) -> Any:
        page = original(token, 2, before_index)
        if before_index:  # a new checkpoint was published between the pages
            h.world.record(BOB)
            h.world.publish()
            page = original(token, 2, before_index)
        return page

    h.audit.citizen_history = paged  # type: ignore[method-assign]
    token = csrf_of(client.get("/me/requests").text)
    assert client.post("/me/requests/access", data={"csrf_token": token}).status_code == 303
    (evidence,) = fake.evidence
    assert len(evidence.entries) == 6 and evidence.omitted == 0


def test_an_access_request_waits_while_the_log_cannot_prove_anything(
    h: Harness, fake: FakeRequests
) -> None:
    h.world.record(ALICE)  # no checkpoint yet
    client = client_of(h, fake)
    h.login(client, ALICE)
    token = csrf_of(client.get("/me/requests").text)
    response = client.post("/me/requests/access", data={"csrf_token": token})
    assert response.status_code == 303 and fake.evidence == []
    (_, waiting) = next(iter(fake.requests.values()))
    assert waiting.kind == "access" and waiting.state == "RECEIVED"
    page = client.get(response.headers["location"])
    assert "has not been prepared yet" in page.text and "Prepare my data now" in page.text

    # The log is down a moment later; then it is back with a checkpoint.
    h.world.publish()
    h.audit.down = True
    again = client.post(f"/me/requests/{waiting.id}/bundle", data={"csrf_token": token})
    assert again.status_code == 303 and fake.evidence == []
    h.audit.down = False
    again = client.post(f"/me/requests/{waiting.id}/bundle", data={"csrf_token": token})
    assert again.status_code == 303 and len(fake.evidence) == 1
    assert "Download the signed bundle" in client.get(again.headers["location"]).text


def test_another_citizens_request_is_not_found(h: Harness, fake: FakeRequests) -> None:
    theirs = fake.add(BOB)
    client = client_of(h, fake)
    h.login(client, ALICE)
    assert client.get(f"/me/requests/{theirs.id}").status_code == 404
    assert client.get(f"/me/requests/{theirs.id}/bundle.json").status_code == 404
    token = csrf_of(client.get("/me/requests").text)
    assert (
        client.post(f"/me/requests/{theirs.id}/withdraw", data={"csrf_token": token}).status_code
        == 404
    )
    assert fake.requests[theirs.id][1].state == "RECEIVED"
    assert client.get("/me/requests/not-a-request-id").status_code == 404


def test_withdrawing_needs_the_csrf_token(h: Harness, fake: FakeRequests) -> None:
    mine = fake.add(ALICE)
    client = client_of(h, fake)
    h.login(client, ALICE)
    assert client.post(f"/me/requests/{mine.id}/withdraw").status_code == 403
    token = csrf_of(client.get(f"/me/requests/{mine.id}").text)
    assert (
        client.post(f"/me/requests/{mine.id}/withdraw", data={"csrf_token": token}).status_code
        == 303
    )
    assert fake.requests[mine.id][1].state == "WITHDRAWN"


def test_the_inspector_sees_overdue_requests_and_answers_complaints(
    h: Harness, fake: FakeRequests
) -> None:
    late = fake.add(ALICE, acknowledge_by=NOW - timedelta(days=3))
    complaint = fake.add(
        BOB,
        kind="complaint",
        addressee="",
        purpose="",
        steps=(rb.RequestStep("received", "RECEIVED", NOW, "citizen", "Who read my data?"),),
    )
    client = client_of(h, fake)
    h.login(client, INSPECTOR, "inspector")
    page = client.get("/inspect/requests")
    assert page.status_code == 200
    assert late.id in page.text and "Overdue requests (1)" in page.text
    assert "3 days ago" in page.text and ALICE not in page.text
    assert "Open complaints (1)" in page.text
    detail = client.get(f"/inspect/requests/{complaint.id}")
    assert "Who read my data?" in detail.text and BOB in detail.text
    token = csrf_of(detail.text)
    refused = client.post(
        f"/inspect/requests/{complaint.id}/acknowledge", data={"csrf_token": token}
    )
    assert refused.status_code == 303
    no_text = client.post(f"/inspect/requests/{complaint.id}/complete", data={"csrf_token": token})
    assert no_text.status_code == 400 and "write the reason or the answer" in no_text.text
    done = client.post(
        f"/inspect/requests/{complaint.id}/complete",
        data={"csrf_token": token, "text": "The access was lawful."},
    )
    assert done.status_code == 303
    assert fake.requests[complaint.id][1].steps[-1].text == "The access was lawful."
    assert (
        client.post(
            f"/inspect/requests/{complaint.id}/delete", data={"csrf_token": token}
        ).status_code
        == 404
    )


def test_roles_stay_on_their_own_request_pages(h: Harness, fake: FakeRequests) -> None:
    citizen = client_of(h, fake)
    h.login(citizen, ALICE)
    assert citizen.get("/inspect/requests").status_code == 403
    inspector = client_of(h, fake)
    h.login(inspector, INSPECTOR, "inspector")
    assert inspector.get("/me/requests").status_code == 403
    anonymous = client_of(h, fake)
    assert anonymous.get("/me/requests").status_code == 303


def test_request_pages_speak_vietnamese(h: Harness, fake: FakeRequests) -> None:
    mine = fake.add(ALICE)
    client = client_of(h, fake)
    client.headers["accept-language"] = "vi"
    h.login(client, ALICE)
    page = client.get("/me/requests")
    assert "Gửi yêu cầu" in page.text and "Phản đối xử lý" in page.text
    detail = client.get(f"/me/requests/{mine.id}")
    assert "Hạn xác nhận" in detail.text and "Đã nhận" in detail.text


def test_every_request_page_is_accessible(h: Harness, fake: FakeRequests) -> None:
    mine = fake.add(ALICE, acknowledge_by=NOW - timedelta(days=1))
    access = fake.add(ALICE, kind="access", addressee="", purpose="", bundle_ready=True)
    complaint = fake.add(ALICE, kind="complaint", addressee="", purpose="")
    citizen = client_of(h, fake)
    h.login(citizen, ALICE)
    for path in ("/me/requests", f"/me/requests/{mine.id}", f"/me/requests/{access.id}"):
        _check(citizen.get(path).text, path)
    inspector = client_of(h, fake)
    h.login(inspector, INSPECTOR, "inspector")
    for path in ("/inspect/requests", f"/inspect/requests/{complaint.id}"):
        _check(inspector.get(path).text, path)


def test_the_keys_a_bundle_is_checked_with_are_served(h: Harness, fake: FakeRequests) -> None:
    client = client_of(h, fake)
    log_key = client.get("/.well-known/cdx/log.vkey")
    assert log_key.status_code == 200
    assert log_key.text.strip() == h.world.conf.audit_log_key
    jwks = client.get("/.well-known/cdx/jwks.json").json()
    # the consent service's key (it signs bundles), and the audit service's when anchored
    expected = ["consent-artefacts"] + (
        ["audit-records"] if h.world.conf.audit_service_key_der else []
    )
    assert [k["cdx:use"] for k in jwks["keys"]] == expected
    assert client.get("/.well-known/cdx/../../etc/passwd").status_code == 404
    assert client.get("/.well-known/cdx/secret.key").status_code == 404


def test_without_the_request_service_the_pages_say_unavailable(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    assert client.get("/me/requests").status_code == 503
