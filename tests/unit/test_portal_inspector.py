"""The inspector console: searching (by citizen only with a reason), records with proofs, log
health, denials and one-sided records, unsealing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal import backends as b
from tests.unit.portal_fakes import (
    ALICE,
    BOB,
    GDT,
    INCOME,
    INSPECTOR,
    VSS,
    Harness,
    csrf_of,
    harness,
)


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.record(ALICE, client=VSS)
    h.world.record(
        ALICE,
        client=GDT,
        basis="CONSENT",
        decision="DENY",
        reason="consent_revoked",
        purpose="TAX_ASSESSMENT",
    )
    h.world.record(BOB, client=VSS, service=INCOME, sides=("CONSUMER",))
    h.world.record(BOB, client=GDT, sealed=True)
    h.world.publish()
    return h


def _inspector(h: Harness) -> tuple[object, str]:
    client = h.client()
    h.login(client, INSPECTOR, "inspector")
    return client, csrf_of(client.get("/inspect").text)  # type: ignore[attr-defined]


def test_search_passes_filters_and_shows_the_logged_query(h: Harness) -> None:
    client, token = _inspector(h)
    response = client.post(
        "/inspect/search",
        data={  # type: ignore[attr-defined]
            "csrf_token": token,
            "client": "VN:GOV:GDT",
            "decision": "DENY",
            "from": "2025-06-01",
            "until": "2025-06-02",
            "purpose": "TAX_ASSESSMENT",
        },
    )
    assert response.status_code == 200
    query = h.audit.searches[-1]
    assert (query.client, query.decision, query.purpose) == ("VN:GOV:GDT", "DENY", "TAX_ASSESSMENT")
    assert query.from_ms < query.until_ms and query.subject == "" and query.reason == ""
    assert query.until_ms - query.from_ms == 2 * 86_400_000 - 1
    html = response.text
    assert "This search was recorded in the log" in html
    denied = h.world.leaves[2].record.record_id
    assert f'href="/inspect/records/{denied}"' in html and "Denied: consent revoked" in html


def test_search_by_citizen_needs_a_valid_id_and_a_reason(h: Harness) -> None:
    client, token = _inspector(h)
    response = client.post("/inspect/search", data={"csrf_token": token, "subject": ALICE})  # type: ignore[attr-defined]
    assert (
        response.status_code == 400 and "state a reason of at least 10 characters" in response.text
    )
    assert 'aria-invalid="true"' in response.text
    bad = client.post(
        "/inspect/search",
        data={
            "csrf_token": token,
            "subject": "12345",  # type: ignore[attr-defined]
            "reason": "complaint 2025/117",
        },
    )
    assert bad.status_code == 400 and "enter a valid national id" in bad.text
    assert h.audit.searches == []
    ok = client.post(
        "/inspect/search",
        data={
            "csrf_token": token,
            "subject": ALICE,  # type: ignore[attr-defined]
            "reason": "complaint 2025/117",
        },
    )
    assert ok.status_code == 200
    assert (h.audit.searches[-1].subject, h.audit.searches[-1].reason) == (
        ALICE,
        "complaint 2025/117",
    )
    assert ok.text.count('href="/inspect/records/') == 4  # Alice's four records, not Bob's


@pytest.mark.parametrize(
    "field,value",
    [
        ("service", "VN:GOV:X:y/z"),
        ("purpose", "NOPE"),
        ("from", "yesterday"),
        ("client", "<script>"),
    ],
)
def test_invalid_filters_are_refused_with_a_message(h: Harness, field: str, value: str) -> None:
    client, token = _inspector(h)
    response = client.post("/inspect/search", data={"csrf_token": token, field: value})  # type: ignore[attr-defined]
    assert response.status_code == 400 and 'class="error-summary"' in response.text
    assert "<script>" not in response.text
    assert h.audit.searches == []


def test_record_view_shows_the_proof_verified(h: Harness) -> None:
    client, _ = _inspector(h)
    rid = h.world.leaves[2].record.record_id
    html = client.get(f"/inspect/records/{rid}").text  # type: ignore[attr-defined]
    assert "mark-verified" in html and "Included in the log" in html
    assert "Cosigned by 3 witnesses (2 required)" in html


def test_record_view_of_a_tampered_log_fails(h: Harness) -> None:
    client, _ = _inspector(h)
    rid = h.world.leaves[2].record.record_id
    h.world.leaves[2].data = h.world.leaves[3].data  # the log serves other bytes at that index
    html = client.get(f"/inspect/records/{rid}").text  # type: ignore[attr-defined]
    assert "mark-verified" not in html and "mark-failed" in html


def test_unknown_record_is_not_found(h: Harness) -> None:
    client, _ = _inspector(h)
    assert client.get("/inspect/records/01900000-0000-7000-8000-000000000000").status_code == 404  # type: ignore[attr-defined]
    assert client.get("/inspect/records/..%2F..%2Fetc").status_code == 404  # type: ignore[attr-defined]


def test_denials_and_one_sided_records(h: Harness) -> None:
    client, _ = _inspector(h)
    h.audit.refusals.append(
        b.RefusedAppend("VN:GOV:BCA:ss1", "0190-refused", "unsafe_characters", h.world.clock.now)
    )
    html = client.get("/inspect/denials").text  # type: ignore[attr-defined]
    assert "Denied requests (2)" in html  # both sides recorded the denial
    assert "One-sided records (1)" in html
    assert "Records the log refused (1)" in html and "unsafe_characters" in html
    assert [q.decision for q in h.audit.searches] == ["DENY", ""]
    assert h.audit.searches[1].one_sided_only


def test_health_shows_checkpoint_cosignatures_and_consistency(h: Harness) -> None:
    client, _ = _inspector(h)
    first = client.get("/inspect/health").text  # type: ignore[attr-defined]
    assert "mark-verified" in first and "first checkpoint seen by this portal" in first
    assert (
        "Cosigned by 3 witnesses (2 required)" in first
        and "Tổng cục Thuế (VN:GOV:GDT:ss1)" in first
    )
    h.world.record(ALICE)
    h.world.publish(cosigners=["VN:GOV:BCA:ss1"])  # a newer checkpoint, not yet witnessed
    second = client.get("/inspect/health").text  # type: ignore[attr-defined]
    assert "proven to extend the checkpoint of 7 entries" in second
    assert "mark-verified" in second  # the cosigned checkpoint still counts: no flapping
    assert "not have enough witness cosignatures" not in second
    h.world.clock.now += timedelta(minutes=2)  # ...but witnesses that stop are noticed
    third = client.get("/inspect/health").text  # type: ignore[attr-defined]
    assert "not have enough witness cosignatures" in third


def test_unseal_needs_confirmation_and_a_reason(h: Harness) -> None:
    client, token = _inspector(h)
    sealed = h.world.leaves[-1].record.record_id
    record = client.get(f"/inspect/records/{sealed}").text  # type: ignore[attr-defined]
    assert f'href="/inspect/records/{sealed}/unseal"' in record
    confirm = client.get(f"/inspect/records/{sealed}/unseal").text  # type: ignore[attr-defined]
    assert 'name="reason"' in confirm
    short = client.post(
        f"/inspect/records/{sealed}/unseal",
        data={
            "csrf_token": token,  # type: ignore[attr-defined]
            "reason": "why",
        },
    )
    assert short.status_code == 400 and h.audit.unsealed == []
    done = client.post(
        f"/inspect/records/{sealed}/unseal",  # type: ignore[attr-defined]
        data={"csrf_token": token, "reason": "court order 12/2025 served"},
    )
    assert done.status_code == 303 and h.audit.unsealed == [(sealed, "court order 12/2025 served")]
    assert "The entry is unsealed" in client.get(done.headers["location"]).text  # type: ignore[attr-defined]
    again = client.post(
        f"/inspect/records/{sealed}/unseal",  # type: ignore[attr-defined]
        data={"csrf_token": token, "reason": "court order 12/2025 served"},
    )
    assert "already unsealed" in client.get(again.headers["location"]).text  # type: ignore[attr-defined]


def test_record_view_prefers_a_cosigned_checkpoint(h: Harness) -> None:
    client, _ = _inspector(h)
    first = h.world.leaves[0].record.record_id
    h.world.record(ALICE)
    h.world.publish(cosigners=[])  # the newest checkpoint has no cosignatures yet
    html = client.get(f"/inspect/records/{first}").text  # type: ignore[attr-defined]
    assert "mark-verified" in html and "proven against a log of 7 entries" in html
    newest = h.world.leaves[-1].record.record_id
    html = client.get(f"/inspect/records/{newest}").text  # type: ignore[attr-defined]
    assert "mark-pending" in html and "not have enough witness cosignatures" in html


def test_record_not_yet_in_a_checkpoint_says_so(h: Harness) -> None:
    client, _ = _inspector(h)
    h.world.record(ALICE)
    response = client.get(f"/inspect/records/{h.world.leaves[-1].record.record_id}")  # type: ignore[attr-defined]
    assert response.status_code == 404 and "not yet in a published checkpoint" in response.text
