"""Portal web security: CSRF on every form, security headers, session cookies, redirects."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from starlette.routing import Route

from cdx import errors
from tests.unit.portal_fakes import ALICE, BOB, INSPECTOR, Harness, csrf_of, harness


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


def test_session_cookie_is_secure_http_only_and_holds_only_an_id(h: Harness) -> None:
    client = h.client()
    state = h.start_login(client)
    login = client.get("/auth/callback", params={"state": state, "code": h.idp.code_for(ALICE)})
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("__Host-cdx_session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=1800"):
        assert attribute in cookie
    assert ALICE not in cookie and "Domain" not in cookie
    value = client.cookies["__Host-cdx_session"]
    assert len(value) == 43  # a random id: the session itself is server-side
    [token] = h.idp.tokens
    assert token not in cookie
    # Stored under a hash of the id, sealed: the table gives neither a cookie nor the citizen.
    assert value not in h.sessions.rows
    for row in h.sessions.rows.values():
        assert ALICE.encode() not in row.sealed and token.encode() not in row.sealed


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
    state = h.start_login(client, target)
    response = client.get("/auth/callback", params={"state": state, "code": h.idp.code_for(ALICE)})
    assert response.headers["location"] == "/me/access"


def test_login_goes_back_to_the_page_asked_for(h: Harness) -> None:
    client = h.client()
    state = h.start_login(client, "/me/consents")
    response = client.get("/auth/callback", params={"state": state, "code": h.idp.code_for(ALICE)})
    assert response.headers["location"] == "/me/consents"


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (errors.TokenSignatureError(), "its signature is not valid"),
        (errors.TokenAlgorithmError(), "signing method this service does not accept"),
        (errors.TokenNonceError(), "does not belong to this login"),
        (errors.TokenExpiredError(), "has expired"),
        (errors.TokenAudienceError(), "meant for another service"),
        (errors.TokenKeyUnknownError(), "a key it does not publish"),
        (errors.TokenError(), "not valid for this service"),
        (errors.LoginFailedError(), "did not complete the login"),
        (errors.IdentityProviderUnavailableError(), "is not answering"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_each_login_failure_has_its_own_message_and_no_session(
    h: Harness, failure: Exception, message: str
) -> None:
    h.idp.fail_with = failure
    client = h.client()
    state = h.start_login(client)
    response = client.get("/auth/callback", params={"state": state, "code": h.idp.code_for(ALICE)})
    assert response.status_code == 400 and message in response.text
    assert "Traceback" not in response.text
    assert client.get("/me/access").status_code == 303  # not logged in


def test_login_failure_is_explained_in_vietnamese_too(h: Harness) -> None:
    h.idp.fail_with = errors.TokenNonceError()
    client = h.client()
    state = h.start_login(client)
    response = client.get(
        "/auth/callback",
        params={"state": state, "code": h.idp.code_for(ALICE)},
        headers={"accept-language": "vi"},
    )
    assert response.status_code == 400 and "giá trị dùng một lần không khớp" in response.text


def test_callback_without_a_login_started_here_is_refused(h: Harness) -> None:
    """Login CSRF: a code injected into someone else's browser has no matching state."""
    victim = h.client()
    victim.get("/login")
    attacker = h.client()
    state = h.start_login(attacker)
    response = victim.get("/auth/callback", params={"state": state, "code": h.idp.code_for(BOB)})
    assert response.status_code == 400 and "expired or was already used" in response.text
    assert victim.get("/me/access").status_code == 303


def test_callback_cannot_be_replayed(h: Harness) -> None:
    client = h.client()
    state = h.start_login(client)
    params = {"state": state, "code": h.idp.code_for(ALICE)}
    assert client.get("/auth/callback", params=params).status_code == 303
    again = client.get("/auth/callback", params={**params, "code": h.idp.code_for(BOB)})
    assert again.status_code == 400
    assert "expired or was already used" in again.text


def test_login_started_long_ago_is_refused(h: Harness) -> None:
    client = h.client()
    state = h.start_login(client)
    h.world.clock.now += timedelta(minutes=11)
    response = client.get("/auth/callback", params={"state": state, "code": h.idp.code_for(ALICE)})
    assert response.status_code == 400


def test_identity_provider_error_answer_is_shown(h: Harness) -> None:
    client = h.client()
    state = h.start_login(client)
    response = client.get("/auth/callback", params={"state": state, "error": "access_denied"})
    assert response.status_code == 400 and "cancelled or refused" in response.text


def test_unknown_identity_provider_cannot_be_started(h: Harness) -> None:
    client = h.client()
    response = client.get("/login/start", params={"issuer": "https://evil.example"})
    assert response.status_code == 400 and "not available here" in response.text


def test_login_page_offers_the_anchored_providers(h: Harness) -> None:
    page = h.client().get("/login")
    assert "/login/start?issuer=https%3A%2F%2Fid.fake.test" in page.text
    assert "development identity provider" in page.text
    h.idp.development = False
    page = h.client().get("/login")
    assert "Log in with id.fake.test" in page.text


def test_logout_ends_the_session(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    token = csrf_of(client.get("/me/access").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/me/access").status_code == 303


def test_copied_cookie_is_refused_after_logout(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    copied = client.cookies["__Host-cdx_session"]
    thief = h.client()
    thief.cookies.set("__Host-cdx_session", copied, domain="portal.test")
    assert thief.get("/me/access").status_code == 200  # the copy works while logged in
    token = csrf_of(client.get("/me/access").text)
    client.post("/logout", data={"csrf_token": token})
    response = thief.get("/me/access")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_session_id_changes_at_login(h: Harness) -> None:
    """Session fixation: an id planted before login opens nothing after it."""
    client = h.client()
    client.get("/login")
    before = client.cookies["__Host-cdx_session"]
    h.login(client, ALICE)
    after = client.cookies["__Host-cdx_session"]
    assert before != after
    planted = h.client()
    planted.cookies.set("__Host-cdx_session", before, domain="portal.test")
    assert planted.get("/me/access").status_code == 303


def test_logout_also_ends_the_identity_provider_session(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    [id_token] = h.idp.tokens
    page = client.get("/me/access")
    # browsers check the redirect after the logout form against the page's form-action
    assert "form-action 'self' https://id.fake.test;" in page.headers["content-security-policy"]
    response = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.headers["location"].startswith("https://id.fake.test/logout?")
    assert "https://portal.test/logged-out" in response.headers["location"]
    assert h.idp.logged_out == [id_token]
    back = client.get("/logged-out")
    assert back.headers["location"] == "/login"
    assert "You have logged out." in client.get("/login").text


def test_session_ends_after_its_absolute_lifetime(h: Harness) -> None:
    h.idp.token_lifetime = timedelta(hours=20)
    client = h.client()
    h.login(client, ALICE)
    for _ in range(36):  # active every 20 minutes for 12 hours
        assert client.get("/me/access").status_code == 200
        h.world.clock.now += timedelta(minutes=20)
    assert client.get("/me/access").status_code == 303


def test_session_ends_when_the_id_token_expires(h: Harness) -> None:
    client = h.client()
    h.login(client, ALICE)
    h.world.clock.now += timedelta(minutes=29)
    assert client.get("/me/access").status_code == 200
    h.world.clock.now += timedelta(minutes=29)
    h.world.clock.now += timedelta(minutes=3)  # the fake's ID token lives one hour
    response = client.get("/me/access")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_oversized_form_is_refused(h: Harness) -> None:
    client = h.client()
    token = csrf_of(client.get("/login").text)
    response = client.post("/lang", data={"csrf_token": token, "lang": "1" * 200_000})
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


def test_sessions_of_visitors_who_never_log_in_are_purged(h: Harness) -> None:
    for _ in range(5):
        h.client().get("/login")
    assert len(h.sessions.rows) == 5
    h.world.clock.now += timedelta(minutes=31)
    h.client().get("/login")
    assert len(h.sessions.rows) == 1
