"""Acting for someone in the portal: a legal representative chooses a person they represent,
the pages then show and change that person's data use and consents (the services check the
relation on every call), the choice stays visible, and the represented person later sees who
acted for them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from cdx.ids import CitizenId
from tests.unit.portal_fakes import (
    ALICE,
    BOB,
    GDT,
    NOW,
    Harness,
    csrf_of,
    harness,
)

CHILD = "001090000031"
CHILD_NAME = "Nguyễn Minh Khang"
BANNER = 'id="acting-banner"'


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.represent(ALICE, CHILD, name=CHILD_NAME)
    h.world.record(CHILD, client=GDT, at=NOW - timedelta(days=1))
    h.world.record(ALICE, at=NOW - timedelta(days=2))
    h.world.publish()
    return h


def _client(h: Harness, who: str = ALICE) -> Any:
    client = h.client()
    h.login(client, who)
    return client


def _text(html: str) -> str:
    """What a reader sees: tags dropped, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _act_for(client: Any, h: Harness, relation_id: str) -> Any:
    page = client.get("/me/acting-for").text
    return client.post(
        "/me/acting-for", data={"csrf_token": csrf_of(page), "relation": relation_id}
    )


def test_a_parent_acts_for_their_child_and_the_pages_show_the_childs_data(h: Harness) -> None:
    client = _client(h)
    page = client.get("/me/acting-for").text
    assert CHILD_NAME in page and CHILD not in page  # a name, never the national id
    relation = h.world.relations[0]
    chosen = _act_for(client, h, relation.id)
    assert chosen.status_code == 303 and chosen.headers["location"] == "/me/access"
    html = client.get("/me/access").text
    assert f"You are acting for {CHILD_NAME}, as their parent" in _text(html)
    assert html.count('class="card"') == 1 and "Tổng cục Thuế" in html  # the child's entry
    assert "Confirmed to be about you" not in html and html.count("mark-verified") == 1
    assert CHILD not in html


def test_a_parents_approval_is_recorded_as_the_childs_parent_and_both_see_it(h: Harness) -> None:
    pending = h.consent.add(CHILD, state="PENDING")
    client = _client(h)
    _act_for(client, h, h.world.relations[0].id)
    consents = client.get("/me/consents").text
    assert f'id="consent-{pending}"' in consents
    approved = client.post(
        f"/me/consents/{pending}/approve", data={"csrf_token": csrf_of(consents)}
    )
    assert approved.status_code == 303 and h.consent.state(pending) == "ACTIVE"
    actor = h.consent.history[pending][-1].actor
    assert re.fullmatch(r"representative:parent:[0-9a-f-]{36}", actor)
    seen = _text(client.get(f"/me/consents/{pending}").text)
    assert "Approved by a parent (legal representative)" in seen
    child = _client(h, CHILD)
    assert "Approved by your parent" in _text(child.get(f"/me/consents/{pending}").text)


def test_the_represented_person_sees_in_their_history_who_acted_and_who_looked(
    h: Harness,
) -> None:
    h.world.record(
        CHILD,
        client=GDT,
        kind="consent_event",
        basis="CONSENT",
        reason="approved",
        sides=("PROVIDER",),
        recorder="urn:cdx:service:consent",
        actor="representative:parent",
    )
    h.world.record(
        CHILD,
        kind="representative_access",
        sides=("PROVIDER",),
        recorder="urn:cdx:service:audit",
        actor="representative:parent",
        note="history",
    )
    h.world.publish()
    html = _text(_client(h, CHILD).get("/me/access").text)
    assert "The request was approved" in html and "You approved" not in html
    assert "Your legal representative viewed your data use" in html
    assert html.count("your parent") == 2


def test_choosing_someone_the_user_does_not_represent_is_refused(h: Harness) -> None:
    client = _client(h, BOB)
    page = client.get("/me/acting-for").text
    assert "The register has recorded nobody you represent." in page
    forged = _act_for(client, h, h.world.relations[0].id)  # Alice's relation, posted by Bob
    assert forged.status_code == 404
    assert BANNER not in client.get("/me/access").text


def test_an_ended_relation_drops_back_to_acting_for_oneself_with_a_reason(h: Harness) -> None:
    client = _client(h)
    _act_for(client, h, h.world.relations[0].id)
    h.world.relations[0].in_force = False  # the register ended it, or the child came of age
    refused = client.get("/me/consents")
    assert refused.status_code == 303 and refused.headers["location"] == "/me/acting-for"
    page = client.get("/me/acting-for").text
    assert "Your representation of this person has ended" in page
    assert BANNER not in page
    own = client.get("/me/access").text
    assert BANNER not in own and own.count('class="card"') == 1


def test_acting_as_oneself_again_is_one_button(h: Harness) -> None:
    client = _client(h)
    _act_for(client, h, h.world.relations[0].id)
    html = client.get("/me/access").text
    assert BANNER in html
    back = client.post("/me/acting-for", data={"csrf_token": csrf_of(html), "relation": ""})
    assert back.status_code == 303
    assert BANNER not in client.get("/me/access").text


def test_the_choice_is_checked_against_the_session_not_the_form(h: Harness) -> None:
    """The national id acted for comes from the consent service's answer, never from what the
    browser posts: posting an id instead of a relation id chooses nobody."""
    client = _client(h)
    refused = _act_for(client, h, CHILD)
    assert refused.status_code == 404
    assert CitizenId(CHILD)  # a valid id, still not a relation id


def test_vietnamese_pages_say_who_acts_for_whom(h: Harness) -> None:
    client = _client(h)
    page = client.get("/me/acting-for").text
    client.post("/lang", data={"csrf_token": csrf_of(page), "lang": "vi", "next": "/"})
    _act_for(client, h, h.world.relations[0].id)
    html = client.get("/me/access").text
    assert f"Bạn đang thay mặt {CHILD_NAME}, với tư cách cha hoặc mẹ" in _text(html)


def test_the_acting_pages_are_accessible(h: Harness) -> None:
    from tests.unit.test_portal_a11y import _check

    pending = h.consent.add(CHILD, state="PENDING")
    client = _client(h)
    _check(client.get("/me/acting-for").text, "/me/acting-for")
    _act_for(client, h, h.world.relations[0].id)
    for path in ("/me/acting-for", "/me/access", "/me/consents", f"/me/consents/{pending}"):
        _check(client.get(path).text, path)
