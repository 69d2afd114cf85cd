"""Portal web security: CSRF on every form, security headers, session cookies, redirects."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from starlette.routing import Route

from tests.unit.portal_fakes import ALICE, INSPECTOR, Harness, csrf_of, harness


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.world.record(ALICE)
    h.world.record(ALICE, decision="DENY", reason="consent_revoked", basis="CONSENT", sealed=True)
    h.world.publish()
    h.consent.add(ALICE, state="ACTIVE")
    h.consent.add(ALICE, state="PAUSED")
    h.consent.add(ALICE, state="PENDING")
    return h


def _post_routes(app: object) -> list[str]:
    return [r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]  # type: ignore[attr-defined]


def _fill(path: str, h: Harness, action: str = "pause") -> str:
    cid = next(iter(h.consent.consents))
    rid = h.world.leaves[1].record.record_id
    return path.replace("{consent_id}", cid).replace("{record_id}", rid).replace("{action}", action)


def test_every_form_without_csrf_token_is_refused(h: Harness) -> None:
    app = h.app()
    posts = _post_routes(app)
    assert {
        "/login",
        "/logout",
        "/lang",
        "/inspect/search",
        "/me/consents/{consent_id}/revoke",
        "/me/consents/{consent_id}/{action}",
        "/inspect/records/{record_id}/unseal",
    } <= set(posts)
    before = {cid: h.consent.state(cid) for cid in h.consent.consents}
    for role, subject in (("citizen", ALICE), ("inspector", INSPECTOR)):
        client = h.client()
        h.login(client, subject, role)
        for path in posts:
            if path.startswith("/me/" if role == "inspector" else "/inspect"):
                continue  # the other role's pages refuse by role first
            data = {
                "confirm": "yes",
                "reason": "a sufficiently long reason",
                "subject": ALICE,
                "role": "citizen",
                "lang": "vi",
            }
            response = client.post(_fill(path, h), data=data)
            assert response.status_code == 403, (role, path, response.status_code)
            assert "The form has expired" in response.text
            bad = client.post(_fill(path, h), data={**data, "csrf_token": "forged"})
            assert bad.status_code == 403, (role, path)
    assert {cid: h.consent.state(cid) for cid in h.consent.consents} == before
    assert h.consent.calls == [] and h.audit.unsealed == [] and h.audit.searches == []


def test_cross_site_post_is_refused_even_with_a_valid_token(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    cid = next(iter(h.consent.consents))
    token = csrf_of(client.get("/me/consents").text)
    evil = client.post(
        f"/me/consents/{cid}/pause",
        data={"csrf_token": token},
        headers={"origin": "https://evil.example"},
    )
    assert evil.status_code == 403
    fetch = client.post(
        f"/me/consents/{cid}/pause",
        data={"csrf_token": token},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert fetch.status_code == 403
    assert h.consent.state(cid) == "ACTIVE"
    sandboxed = client.post(
        f"/me/consents/{cid}/pause",
        data={"csrf_token": token},
        headers={"origin": "null", "sec-fetch-site": "cross-site"},
    )
    assert sandboxed.status_code == 403
    ok = client.post(
        f"/me/consents/{cid}/pause",
        data={"csrf_token": token},
        headers={"origin": "https://portal.test"},
    )
    assert ok.status_code == 303 and h.consent.state(cid) == "PAUSED"


@pytest.mark.parametrize("path", ["/login", "/me/access", "/does-not-exist", "/static/portal.css"])
def test_security_headers_on_pages_errors_and_static_files(h: Harness, path: str) -> None:
    client = h.client()
    h.login(client, ALICE)
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert "max-age" in response.headers["strict-transport-security"]
    if not path.startswith("/static/"):
        assert response.headers["cache-control"] == "no-store"


def test_internal_error_page_has_headers_and_no_details(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)

    def boom(token: str, limit: int) -> None:
        raise RuntimeError("secret detail 001090000001")

    h.audit.citizen_history = boom  # type: ignore[method-assign,assignment]
    response = client.get("/me/access")
    assert response.status_code == 500
    assert "secret detail" not in response.text and ALICE not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert re.search(r"Reference: [0-9a-f]{32}", response.text)


def test_pages_have_no_inline_script_or_style(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    for path in ("/me/access", "/me/consents", "/me/report"):
        html = client.get(path).text
        assert "<script" not in html and "<style" not in html and " style=" not in html
        assert " onclick=" not in html and "javascript:" not in html


def test_session_cookie_is_secure_http_only_and_encrypted(h: Harness) -> None:
    client = h.client()
    page = client.get("/login")
    login = client.post("/login", data={"csrf_token": csrf_of(page.text), "subject": ALICE})
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("__Host-cdx_session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=1800"):
        assert attribute in cookie
    assert ALICE not in cookie and "Domain" not in cookie


def test_session_cookie_is_rewritten_only_on_change_or_to_slide(h: Harness) -> None:
    """A request that started before a login must not put the old session back when it ends
    late: unchanged sessions are not written again, except to slide the idle limit."""
    client = h.client()
    h.login(client, ALICE)
    assert "set-cookie" not in client.get("/me/access").headers
    h.world.clock.now += timedelta(seconds=61)
    assert "set-cookie" in client.get("/me/access").headers
    assert "set-cookie" not in client.get("/static/portal.css").headers


def test_insecure_cookies_only_when_asked_for() -> None:
    h = harness(secure_cookies=False)
    client = h.client()
    cookie = client.get("/login").headers["set-cookie"]
    assert cookie.startswith("cdx_session=") and "Secure" not in cookie and "HttpOnly" in cookie
    assert "strict-transport-security" not in client.get("/login").headers


def test_tampered_session_cookie_logs_out(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    value = client.cookies["__Host-cdx_session"]
    flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
    client.cookies.set("__Host-cdx_session", flipped, domain="portal.test")
    response = client.get("/me/access")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_idle_session_expires(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    assert client.get("/me/access").status_code == 200
    h.world.clock.now += timedelta(minutes=31)
    response = client.get("/me/access")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_login_replaces_the_session(h: Harness) -> None:
    client = h.client()
    before = csrf_of(client.get("/login").text)
    h.login(client, ALICE)
    after = csrf_of(client.get("/me/access").text)
    assert before != after


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil", "/inspect"]
)
def test_login_never_redirects_off_site_or_across_roles(h: Harness, target: str) -> None:
    client = h.client()
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": token, "subject": ALICE, "role": "citizen", "next": target}
    )
    assert response.headers["location"] == "/me/access"


def test_development_login_refused_in_production(h: Harness) -> None:
    h.idp.development = False
    client = h.client()
    page = client.get("/login")
    assert 'name="subject"' not in page.text
    response = client.post(
        "/login", data={"csrf_token": csrf_of(page.text), "subject": ALICE, "role": "citizen"}
    )
    assert response.status_code == 400 and h.idp.tokens == {}


def test_logout_ends_the_session(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    token = csrf_of(client.get("/me/access").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/me/access").status_code == 303


def test_oversized_form_is_refused(h: Harness) -> None:
    client = h.client()
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf_token": token, "subject": "1" * 200_000})
    assert response.status_code == 413


def test_hostile_text_from_the_log_is_escaped(h: Harness) -> None:
    """An inspector's stated reason is shown to the citizen: it must never become markup."""
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    h.world.record(
        ALICE, kind="inspector_query", note=hostile, sides=("PROVIDER",), recorder="VN:GOV:BCA:ss1"
    )
    h.world.publish()
    client = h.client()
    h.login(client, ALICE)
    for path in ("/me/access", "/me/report"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
