"""The citizen's pages: data use newest first with names and checks, consent actions (revoking
only after confirmation), the signed receipt and the access report."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.unit.portal_fakes import ALICE, GDT, NOW, VSS, Harness, csrf_of, harness


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.record(ALICE, client=VSS, at=NOW - timedelta(days=2))
    h.world.record(
        ALICE,
        client=GDT,
        basis="CONSENT",
        consent_id="c-1",
        decision="DENY",
        reason="consent_revoked",
        purpose="TAX_ASSESSMENT",
        at=NOW - timedelta(hours=1),
    )
    h.world.publish()
    return h


def _logged_in(h: Harness) -> object:
    client = h.client()
    h.login(client, ALICE)
    return client


def test_data_use_lists_every_access_newest_first_with_names(h: Harness) -> None:
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert html.count('class="card"') == 2  # two exchanges, four records (both sides)
    tax, social = html.index("Tổng cục Thuế"), html.index("Bảo hiểm xã hội Việt Nam")
    assert tax < social  # newest first
    assert "Denied: consent revoked" in html
    assert "Legal obligation: Decree 20/2021/ND-CP" in html
    assert "Population register: person" in html and "Tax assessment" in html
    assert "(system: income)" in html
    assert html.count("mark-verified") == 2


def test_a_long_history_pages_to_older_entries(h: Harness) -> None:
    import dataclasses

    h.config = dataclasses.replace(h.config, history_limit=2)
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert html.count('class="card"') == 1  # the newest two records: one exchange
    older = html.split('href="/me/access?before=', 1)[1].split('"', 1)[0]
    assert "Older entries" in html and "Newest entries" not in html
    page = client.get(f"/me/access?before={older}").text  # type: ignore[attr-defined]
    assert page.count('class="card"') == 1 and "Bảo hiểm xã hội Việt Nam" in page
    assert "Newest entries" in page and "Older entries" not in page
    for bad in ("0", "-1", "x", "1" * 40):
        assert client.get(f"/me/access?before={bad}").status_code == 404  # type: ignore[attr-defined]


def test_access_detail_shows_both_sides_and_the_cosigned_checkpoint(h: Harness) -> None:
    client = _logged_in(h)
    rid = h.world.records_of(ALICE)[0].record.record_id
    html = client.get(f"/me/access/{rid}").text  # type: ignore[attr-defined]
    assert "Record of the providing side" in html and "Record of the requesting side" in html
    assert "Cosigned by 3 witnesses (2 required)" in html
    assert "Confirmed to be about you" in html


def test_unpublished_access_shows_as_not_yet_verifiable(h: Harness) -> None:
    h.world.record(ALICE, at=NOW)
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert html.count("mark-pending") == 1 and html.count("mark-verified") == 2


def test_forged_checkpoint_marks_nothing_verified(h: Harness) -> None:
    h.world.checkpoint_note = h.world.checkpoint_note.replace("\n\n", "\nextra\n\n", 1)
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert "mark-verified" not in html and html.count("mark-failed") == 2
    assert "could not be verified" in html


def test_sealed_access_stays_hidden_until_unsealed(h: Harness) -> None:
    h.world.record(ALICE, sealed=True, client=GDT)
    h.world.publish()
    client = _logged_in(h)
    assert client.get("/me/access").text.count('class="card"') == 2  # type: ignore[attr-defined]
    for leaf in h.world.records_of(ALICE)[-2:]:
        leaf.unsealed = True
    assert client.get("/me/access").text.count('class="card"') == 3  # type: ignore[attr-defined]


def test_pause_resume_and_approve_reject(h: Harness) -> None:
    active = h.consent.add(ALICE)
    pending = h.consent.add(ALICE, state="PENDING")
    other_pending = h.consent.add(ALICE, state="PENDING")
    client = _logged_in(h)
    page = client.get("/me/consents").text  # type: ignore[attr-defined]
    assert "Requests waiting for your answer" in page and "Who: Tổng cục Thuế (income)" in page
    token = csrf_of(page)
    for cid, action, state in (
        (active, "pause", "PAUSED"),
        (active, "resume", "ACTIVE"),
        (pending, "approve", "ACTIVE"),
        (other_pending, "reject", "REJECTED"),
    ):
        response = client.post(f"/me/consents/{cid}/{action}", data={"csrf_token": token})  # type: ignore[attr-defined]
        assert response.status_code == 303 and h.consent.state(cid) == state
    assert "The consent is active again." in client.get("/me/consents").text  # type: ignore[attr-defined]


def test_action_not_allowed_from_the_current_state_is_explained(h: Harness) -> None:
    cid = h.consent.add(ALICE, state="REVOKED")
    client = _logged_in(h)
    token = csrf_of(client.get("/me/consents").text)  # type: ignore[attr-defined]
    response = client.post(f"/me/consents/{cid}/resume", data={"csrf_token": token})  # type: ignore[attr-defined]
    assert response.status_code == 409 and "not possible now" in response.text
    assert client.post(f"/me/consents/{cid}/delete", data={"csrf_token": token}).status_code == 404  # type: ignore[attr-defined]


def test_revoke_asks_for_confirmation_then_takes_effect(h: Harness) -> None:
    cid = h.consent.add(ALICE)
    client = _logged_in(h)
    listing = client.get("/me/consents").text  # type: ignore[attr-defined]
    assert f'href="/me/consents/{cid}/revoke"' in listing  # a link to the confirmation step
    assert f'action="/me/consents/{cid}/revoke"' not in listing
    confirm = client.get(f"/me/consents/{cid}/revoke").text  # type: ignore[attr-defined]
    assert "Revoking takes effect immediately" in confirm
    assert 'name="confirm" value="yes"' in confirm
    token = csrf_of(confirm)
    skipped = client.post(f"/me/consents/{cid}/revoke", data={"csrf_token": token})  # type: ignore[attr-defined]
    assert skipped.headers["location"] == f"/me/consents/{cid}/revoke"
    assert h.consent.state(cid) == "ACTIVE"
    done = client.post(f"/me/consents/{cid}/revoke", data={"csrf_token": token, "confirm": "yes"})  # type: ignore[attr-defined]
    assert done.status_code == 303 and h.consent.state(cid) == "REVOKED"
    after = client.get("/me/consents").text  # type: ignore[attr-defined]
    assert "It stopped working immediately." in after
    assert f'href="/me/consents/{cid}/revoke"' not in after


def test_consent_detail_checks_the_artefact_signature(h: Harness) -> None:
    cid = h.consent.add(ALICE)
    client = _logged_in(h)
    html = client.get(f"/me/consents/{cid}").text  # type: ignore[attr-defined]
    assert "signed by the consent service" in html and "Granted" in html
    subject, consent = h.consent.consents[cid]
    forged = consent.artefact[:-4] + ("AAAA" if not consent.artefact.endswith("AAAA") else "BBBB")
    h.consent.consents[cid] = (subject, type(consent)(**{**consent.__dict__, "artefact": forged}))
    html = client.get(f"/me/consents/{cid}").text  # type: ignore[attr-defined]
    assert "does not match the registered consent service key" in html


def test_receipt_download_is_signed_and_checked(h: Harness) -> None:
    cid = h.consent.add(ALICE)
    client = _logged_in(h)
    response = client.get(f"/me/consents/{cid}/receipt")  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    body = json.loads(response.text)
    assert body["receipt"]["consent_id"] == cid and body["signature_verified_by_portal"] is True
    assert body["jws"].count(".") == 2


def test_access_report_json_carries_evidence_and_no_id(h: Harness) -> None:
    client = _logged_in(h)
    response = client.get("/me/report.json")  # type: ignore[attr-defined]
    assert "attachment" in response.headers["content-disposition"]
    report = json.loads(response.text)
    assert report["format"] == "cdx-access-report/v1"
    assert [a["agency"] for a in report["accesses"]] == [
        "Tổng cục Thuế",
        "Bảo hiểm xã hội Việt Nam",
    ]
    assert all(a["status"] == "verified" for a in report["accesses"])
    assert report["log"]["cosigned_by"] and report["log"]["checkpoint_note"].startswith(
        "vn.cdx.example/audit\n"
    )
    assert all(r["leaf"] and r["inclusion_proof"] for a in report["accesses"] for r in a["records"])
    assert ALICE not in response.text


def test_printable_report_lists_accesses(h: Harness) -> None:
    client = _logged_in(h)
    html = client.get("/me/report").text  # type: ignore[attr-defined]
    assert "<table" in html and html.count("<tr>") == 3 and "Generated" in html


def test_unavailable_backend_shows_a_clear_page(h: Harness) -> None:
    client = _logged_in(h)
    h.audit.down = True
    response = client.get("/me/access")  # type: ignore[attr-defined]
    assert response.status_code == 503 and "temporarily unavailable" in response.text
    h.conf_source.down = True
    assert client.get("/me/access").status_code == 503  # type: ignore[attr-defined]


def test_expired_token_sends_back_to_login(h: Harness) -> None:
    client = _logged_in(h)
    for _ in range(2):  # keep the session alive (idle < 30 min) ...
        h.world.clock.now += timedelta(minutes=25)
        assert client.get("/me/access").status_code == 200  # type: ignore[attr-defined]
    h.world.clock.now += timedelta(minutes=25)  # ... until the token's hour has passed
    response = client.get("/me/access")  # type: ignore[attr-defined]
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_unsealed_access_says_it_was_covert(h: Harness) -> None:
    h.world.record(ALICE, sealed=True, client=GDT)
    h.world.publish()
    for leaf in h.world.records_of(ALICE)[-2:]:
        leaf.unsealed = True
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert html.count("This access was covert (sealed)") == 1


def test_consent_changes_appear_verified_in_the_history(h: Harness) -> None:
    from cdx import records

    h.world.record(
        ALICE,
        client=VSS,
        basis="CONSENT",
        consent_id="c-1",
        reason="revoked",
        fields=(),
        sides=("CONSUMER",),
        recorder=records.CONSENT_RECORDER,
        kind=records.KIND_CONSENT_EVENT,
        note="revoked",
    )
    h.world.publish()
    client = _logged_in(h)
    html = client.get("/me/access").text  # type: ignore[attr-defined]
    assert "Consent change" in html
    assert "You revoked the consent" in html
    assert html.count("mark-verified") == 3  # two exchanges and the consent change
