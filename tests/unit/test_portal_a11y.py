"""Accessibility of every page, checked on the rendered HTML: a language, landmarks, one h1,
labelled form controls, unique ids, named buttons and links, no positive tabindex."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cdx import errors
from tests.unit.portal_fakes import ALICE, BOB, GDT, INSPECTOR, Harness, csrf_of, harness

CONTROLS = {"input", "select", "textarea"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.open_labels = 0
        self.wrapped: list[str] = []
        self.h1 = 0
        self.texts: dict[int, str] = {}
        self._stack: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "label":
            self.open_labels += 1
            if "for" in a:
                self.label_for.add(a["for"])
        if tag in CONTROLS and self.open_labels:
            self.wrapped.append(a.get("id", ""))
        if tag == "h1":
            self.h1 += 1
        if tag in ("a", "button"):
            self._stack.append((tag, len(self.tags) - 1))
            self.texts[len(self.tags) - 1] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1
        if tag in ("a", "button") and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        for _, index in self._stack:
            self.texts[index] += data


def _check(html: str, path: str) -> None:
    page = _Page()
    page.feed(html)
    html_tag = next(a for t, a in page.tags if t == "html")
    assert html_tag.get("lang") in ("en", "vi"), path
    names = [t for t, _ in page.tags]
    assert "main" in names and "header" in names and "footer" in names, path
    assert page.h1 == 1, (path, page.h1)
    assert len(page.ids) == len(set(page.ids)), (
        path,
        sorted(i for i in page.ids if page.ids.count(i) > 1),
    )
    for tag, a in page.tags:
        if tag in CONTROLS and a.get("type") != "hidden":
            assert a.get("id") in page.label_for or a.get("id") in page.wrapped, (path, a)
        if tag == "meta" and a.get("name") == "viewport":
            assert "width=device-width" in a["content"] and "user-scalable" not in a["content"]
        assert int(a.get("tabindex", "0")) <= 0, (path, tag)
        if tag == "img":
            assert "alt" in a, path
    for index, text in page.texts.items():
        tag, a = page.tags[index]
        assert text.strip() or a.get("aria-label"), (path, tag, a)
    assert any(t == "a" and a.get("href") == "#main" for t, a in page.tags), path


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.record(ALICE)
    h.world.record(ALICE, client=GDT, decision="DENY", reason="consent_revoked", sealed=True)
    h.world.record(BOB, sides=("CONSUMER",))
    h.world.publish()
    h.consent.add(ALICE)
    h.consent.add(ALICE, state="PENDING")
    return h


def test_every_citizen_page_is_accessible(h: Harness) -> None:
    client = h.client()
    _check(client.get("/login").text, "/login")
    h.login(client, ALICE)
    rid = h.world.records_of(ALICE)[0].record.record_id
    cid = next(iter(h.consent.consents))
    for path in (
        "/me/access",
        f"/me/access/{rid}",
        "/me/consents",
        f"/me/consents/{cid}",
        f"/me/consents/{cid}/revoke",
        "/me/report",
        "/me/access/unknown-record",
        "/inspect",
    ):
        _check(client.get(path).text, path)


def test_every_inspector_page_is_accessible(h: Harness) -> None:
    client = h.client()
    h.login(client, INSPECTOR, "inspector")
    rid = h.world.leaves[2].record.record_id
    for path in (
        "/inspect",
        f"/inspect/records/{rid}",
        f"/inspect/records/{rid}/unseal",
        "/inspect/health",
        "/inspect/denials",
    ):
        _check(client.get(path).text, path)
    token = csrf_of(client.get("/inspect").text)
    results = client.post("/inspect/search", data={"csrf_token": token, "decision": "DENY"})
    _check(results.text, "search results")
    errors = client.post("/inspect/search", data={"csrf_token": token, "subject": "1"})
    _check(errors.text, "search errors")


def test_failed_login_summarises_the_problem_in_an_alert(h: Harness) -> None:
    h.idp.fail_with = errors.TokenNonceError()
    client = h.client()
    state = h.start_login(client)
    code = h.idp.code_for(ALICE)
    response = client.get("/auth/callback", params={"state": state, "code": code})
    assert response.status_code == 400
    assert 'role="alert"' in response.text and 'id="login-error"' in response.text
    _check(response.text, "login error")


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize(
    "fg,bg",
    [
        ("--text", "--bg"),
        ("--muted", "--bg"),
        ("--muted", "--panel"),
        ("--brand", "--bg"),
        ("--bg", "--brand"),
        ("--ok-text", "--ok-bg"),
        ("--warn-text", "--warn-bg"),
        ("--bad-text", "--bad-bg"),
        ("--bad-text", "--bg"),
        ("--bg", "--bad-text"),
    ],
)
def test_colour_pairs_meet_wcag_aa_contrast(fg: str, bg: str) -> None:
    css = (Path(__file__).resolve().parents[2] / "portal" / "static" / "portal.css").read_text()
    colours = dict(re.findall(r"(--[a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    assert _contrast(colours[fg], colours[bg]) >= 4.5, (fg, bg)
