"""Privacy in the portal: national ids never in URLs or logs; one citizen never sees another's
data, also when editing URLs; each role stays on its own pages."""

from __future__ import annotations

import logging
import re

import pytest

from tests.unit.portal_fakes import ALICE, BOB, INSPECTOR, Harness, csrf_of, harness

URL_ATTRS = re.compile(r'(?:href|action|src)="([^"]*)"')


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.record(ALICE)
    h.world.record(ALICE, decision="DENY", reason="consent_revoked", basis="CONSENT")
    h.world.record(BOB, client="VN:GOV:GDT:income", purpose="TAX_ASSESSMENT")
    h.world.publish()
    h.consent.add(ALICE)
    h.consent.add(BOB)
    return h


def _urls(response: object) -> list[str]:
    urls = URL_ATTRS.findall(response.text)  # type: ignore[attr-defined]
    location = response.headers.get("location")  # type: ignore[attr-defined]
    return [*urls, *([location] if location else [])]


def test_no_national_id_in_urls_or_logs(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    citizen = h.client()
    seen += _urls(citizen.get("/login"))
    state = h.start_login(citizen)
    code = h.idp.code_for(ALICE)
    login = citizen.get("/auth/callback", params={"state": state, "code": code})
    seen += _urls(login)
    cid = next(c for c, (s, _) in h.consent.consents.items() if s == ALICE)
    rid = h.world.records_of(ALICE)[0].record.record_id
    for path in (
        "/me/access",
        f"/me/access/{rid}",
        "/me/consents",
        f"/me/consents/{cid}",
        f"/me/consents/{cid}/revoke",
        "/me/report",
    ):
        response = citizen.get(path)
        assert response.status_code == 200, path
        seen += _urls(response)
        seen.append(path)
    report = citizen.get("/me/report.json")
    assert ALICE not in report.text  # the downloadable report carries no national id
    revoke = citizen.post(
        f"/me/consents/{cid}/revoke",
        data={"csrf_token": csrf_of(citizen.get("/me/access").text), "confirm": "yes"},
    )
    seen += _urls(revoke)

    inspector = h.client()
    h.login(inspector, INSPECTOR, "inspector")
    token = csrf_of(inspector.get("/inspect").text)
    result = inspector.post(
        "/inspect/search",
        data={"csrf_token": token, "subject": ALICE, "reason": "complaint 2025/117 by the citizen"},
    )
    assert result.status_code == 200
    assert h.audit.searches[-1].subject == ALICE
    seen += _urls(result)
    for path in ("/inspect/denials", "/inspect/health"):
        seen += _urls(inspector.get(path))
    assert seen and not [u for u in seen if ALICE in u]
    assert ALICE not in caplog.text and BOB not in caplog.text
    for record in caplog.records:
        assert ALICE not in record.getMessage()


def test_search_form_posts_so_the_id_never_reaches_a_url(h: Harness) -> None:
    inspector = h.client()
    h.login(inspector, INSPECTOR, "inspector")
    html = inspector.get("/inspect").text
    assert re.search(r'<form method="post" action="/inspect/search"', html)


def test_second_citizen_cannot_see_first_citizens_data(h: Harness) -> None:
    bob = h.client()
    h.login(bob, BOB)
    page = bob.get("/me/access").text
    assert "Tổng cục Thuế" in page and "Bảo hiểm xã hội Việt Nam" not in page
    alice_records = [leaf.record.record_id for leaf in h.world.records_of(ALICE)]
    alice_consent = next(c for c, (s, _) in h.consent.consents.items() if s == ALICE)
    token = csrf_of(page)
    for rid in alice_records:
        response = bob.get(f"/me/access/{rid}")
        assert response.status_code == 404 and rid not in _main(response.text)
    for path in (
        f"/me/consents/{alice_consent}",
        f"/me/consents/{alice_consent}/revoke",
        f"/me/consents/{alice_consent}/receipt",
    ):
        assert bob.get(path).status_code == 404, path
    for action in ("pause", "approve", "reject", "resume"):
        response = bob.post(f"/me/consents/{alice_consent}/{action}", data={"csrf_token": token})
        assert response.status_code == 404
    response = bob.post(
        f"/me/consents/{alice_consent}/revoke", data={"csrf_token": token, "confirm": "yes"}
    )
    assert response.status_code == 404
    assert h.consent.state(alice_consent) == "ACTIVE"
    # A record id that does not exist looks exactly like one that is someone else's.
    missing = bob.get("/me/access/01900000-0000-7000-8000-000000000000")
    other = bob.get(f"/me/access/{alice_records[0]}")
    assert missing.status_code == other.status_code == 404
    assert _main(missing.text) == _main(other.text)


def _main(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def test_roles_stay_on_their_own_pages(h: Harness) -> None:
    citizen = h.client()
    h.login(citizen, ALICE)
    for path in ("/inspect", "/inspect/health", "/inspect/denials"):
        assert citizen.get(path).status_code == 403
    inspector = h.client()
    h.login(inspector, INSPECTOR, "inspector")
    for path in ("/me/access", "/me/consents", "/me/report.json"):
        assert inspector.get(path).status_code == 403


def test_anonymous_visitor_is_sent_to_login(h: Harness) -> None:
    client = h.client()
    for path in ("/me/access", "/inspect", "/me/report.json"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


def test_history_entry_with_someone_elses_opening_is_not_verified(h: Harness) -> None:
    """The portal checks the opening itself: an audit service that mixed up subjects would be
    caught, not shown as a verified access."""
    leaf = h.world.records_of(BOB)[0]
    leaf.subject = ALICE  # the fake log now hands Bob's entry to Alice, opening and all
    alice = h.client()
    h.login(alice, ALICE)
    html = alice.get(f"/me/access/{leaf.record.record_id}").text
    assert "Verification failed" in html
    assert "could not be confirmed to be about you" in html
