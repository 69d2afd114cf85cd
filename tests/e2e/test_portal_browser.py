"""The portal in a real browser (Debian's Chromium driven by Playwright) over a whole instance.

The story: a citizen logs in, sees the access the demo scenario made, revokes the consent (by
keyboard, after the confirmation step), and the agency's next query is denied; an inspector
finds that denial and sees its proof verified; a second citizen sees nothing of the first, even
by editing URLs; a form posted without its CSRF token is refused. Screenshots of the main pages
go to ``test-output/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from cdx import errors
from tests.conftest import PROJECT_ROOT
from tests.e2e.browser import chromium
from tests.e2e.portal_env import (
    CITIZEN_A,
    CITIZEN_B,
    PortalEnv,
    Scenario,
    play_demo_scenario,
    start_portal_env,
)
from tests.integration.consent_env import SOCIAL, TAX_SERVICE
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = PROJECT_ROOT / "test-output" / "screenshots"
INSPECTOR = "dpa-inspector-1"
SOCIAL_SERVICE = "VN:GOV:VSS:benefits/insurance/v1"

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("portal_browser")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PortalEnv, Scenario]]:
    penv = start_portal_env(tmp_path_factory.mktemp("portal-e2e"))
    try:
        yield penv, play_demo_scenario(penv)
    finally:
        penv.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 0


def new_page(browser: Browser, **options: Any) -> Page:
    context = browser.new_context(ignore_https_errors=True, locale="en-GB", **options)
    return context.new_page()


def log_in(page: Page, url: str, subject: str, role: str = "citizen") -> None:
    """Through the development OpenID provider's login page and back."""
    page.goto(f"{url}/login")
    with page.expect_navigation():
        page.click(".login-options a.button")
    page.check(f"#role-{role}")
    page.fill("#subject", subject)
    with page.expect_navigation(url=f"{url}/**"):
        page.click("#continue")


def until(page: Page, check: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Reload until ``check`` holds (the log publishes and witnesses cosign in seconds)."""

    def reloaded() -> bool:
        if check():
            return True
        page.reload()
        return False

    eventually(reloaded, timeout=timeout, interval=0.3, what=f"what {page.url} shows")


def unlabelled_controls(page: Page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => el.labels.length === 0).map(el => el.name)"""
    )


def test_citizen_revokes_and_inspector_finds_the_verified_denial(
    stack: tuple[PortalEnv, Scenario], browser: Browser
) -> None:
    penv, scenario = stack
    url = penv.url
    citizen = new_page(browser, viewport={"width": 1280, "height": 900})
    citizen.goto(f"{url}/login")
    assert unlabelled_controls(citizen) == []
    shot(citizen, "00-login")
    log_in(citizen, url, CITIZEN_A)
    assert citizen.url == f"{url}/me/access"

    # The demo scenario's accesses, each checked against the cosigned log.
    until(citizen, lambda: citizen.locator(".card .mark-verified").count() >= 2)
    page_text = citizen.inner_text("main")
    assert "Bảo hiểm xã hội Việt Nam" in page_text  # the agency, named from global conf
    assert "annual income" in page_text and "Your consent" in page_text
    assert "Legal obligation: Law on Social Insurance 2024, Art. 10" in page_text
    shot(citizen, "01-citizen-data-use")
    citizen.click("text=Details and proof >> nth=0")
    detail = citizen.inner_text("main")
    assert "Verified" in detail and "Signed by the log key" in detail
    assert "Confirmed to be about you" in detail
    # The proof was computed in the portal from the log's tiles, not taken from the log's API.
    assert f"computed here from the log's public tiles at {penv.audit.tiles_url}" in detail
    shot(citizen, "02-citizen-access-proof")

    # Revoke the consent: a confirmation page, operated by keyboard.
    citizen.goto(f"{url}/me/consents")
    assert citizen.locator(f"#consent-{scenario.pending_id}").count() == 1
    shot(citizen, "03-citizen-consents")
    citizen.click(f"#consent-{scenario.consent_id} a.button.danger")
    assert citizen.url == f"{url}/me/consents/{scenario.consent_id}/revoke"
    shot(citizen, "04-citizen-revoke-confirm")
    for _ in range(40):
        citizen.keyboard.press("Tab")
        focused = citizen.evaluate("document.activeElement.textContent.trim()")
        if focused == "Yes, revoke this consent":
            break
    else:
        pytest.fail("the confirm button cannot be reached by keyboard")
    outline = citizen.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    with citizen.expect_navigation():
        citizen.keyboard.press("Enter")
    assert citizen.url == f"{url}/me/consents"
    assert "It stopped working immediately." in citizen.inner_text("main")
    shot(citizen, "05-citizen-consent-revoked")

    # The agency's next query is refused.
    with pytest.raises(errors.ConsentDeniedError) as refused:
        penv.query(
            SOCIAL, TAX_SERVICE, CITIZEN_A, ["annual_income"], consent_id=scenario.consent_id
        )
    assert refused.value.code == "consent_revoked"

    citizen.goto(f"{url}/me/access")
    until(citizen, lambda: "Denied: consent revoked" in citizen.inner_text("main"))
    shot(citizen, "06-citizen-sees-denial")

    # The inspector finds the denial and sees its proof verified.
    inspector = new_page(browser, viewport={"width": 1280, "height": 900})
    log_in(inspector, url, INSPECTOR, "inspector")
    assert inspector.url == f"{url}/inspect"
    assert unlabelled_controls(inspector) == []
    inspector.fill("#f-client", "VN:GOV:VSS")
    inspector.select_option("#f-decision", "DENY")
    inspector.select_option("#f-service", TAX_SERVICE)
    with inspector.expect_navigation():
        inspector.click("form.search-form button[type=submit]")
    results = inspector.inner_text("main")
    assert "Denied: consent revoked" in results
    assert "This search was recorded in the log" in results
    shot(inspector, "07-inspector-search")
    inspector.click("table.hits a >> nth=0")
    until(inspector, lambda: inspector.locator("p.lead .mark-verified").count() == 1)
    record = inspector.inner_text("main")
    assert "Denied: consent revoked" in record and "Included in the log\nYes" in record
    assert "Signature of the recording server valid\nYes" in record
    assert "Cosigned by 3 witnesses (2 required)" in record or (
        "Cosigned by 2 witnesses (2 required)" in record
    )
    shot(inspector, "08-inspector-record-proof")
    inspector.goto(f"{url}/inspect/health")
    assert inspector.locator(".mark-verified").count() >= 1
    shot(inspector, "09-inspector-log-health")
    inspector.goto(f"{url}/inspect/denials")
    assert "consent revoked" in inspector.inner_text("main")
    shot(inspector, "10-inspector-denials")


def test_second_citizen_cannot_see_the_first_ones_data(
    stack: tuple[PortalEnv, Scenario], browser: Browser
) -> None:
    penv, scenario = stack
    url = penv.url
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    log_in(page, url, CITIZEN_B)
    text = page.inner_text("main")
    assert "No agency has accessed your data yet." in text
    assert "Bảo hiểm xã hội Việt Nam" not in text
    page.goto(f"{url}/me/consents")
    assert "You have no consents." in page.inner_text("main")
    shot(page, "11-second-citizen")
    for path in (
        *(f"/me/access/{rid}" for rid in scenario.record_ids),
        f"/me/consents/{scenario.consent_id}",
        f"/me/consents/{scenario.pending_id}/revoke",
        f"/me/consents/{scenario.consent_id}/receipt",
    ):
        response = page.goto(f"{url}{path}")
        assert response is not None and response.status == 404, path
        assert "Page not found" in page.inner_text("main")
        assert "Bảo hiểm" not in page.inner_text("main")
    shot(page, "12-second-citizen-edited-url")


def test_form_without_csrf_token_is_refused(
    stack: tuple[PortalEnv, Scenario], browser: Browser
) -> None:
    penv, scenario = stack
    url = penv.url
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    log_in(page, url, CITIZEN_A)
    page.goto(f"{url}/me/consents")
    card = f"#consent-{scenario.pending_id}"
    page.evaluate(
        "sel => document.querySelector(sel + \" form[action$='/reject'] input[name=csrf_token]\")"
        ".remove()",
        card,
    )
    with page.expect_navigation() as navigation:
        page.click(f"{card} form[action$='/reject'] button")
    response = navigation.value
    assert response is not None and response.status == 403
    assert "The form has expired" in page.inner_text("main")
    shot(page, "13-csrf-refused")
    page.goto(f"{url}/me/consents")
    assert "Requests waiting for your answer" in page.inner_text("main")  # still pending
    api = page.context.request.post(f"{url}/logout", form={"lang": "vi"})
    assert api.status == 403


def test_phone_width_and_vietnamese(stack: tuple[PortalEnv, Scenario], browser: Browser) -> None:
    penv, _ = stack
    url = penv.url
    page = new_page(
        browser,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    log_in(page, url, CITIZEN_A)
    until(page, lambda: page.locator(".card .mark-verified").count() >= 1)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], "the page scrolls sideways on a phone"
    shot(page, "14-phone-data-use")
    with page.expect_navigation():
        page.click("button[lang=vi]")
    assert page.get_attribute("html", "lang") == "vi"
    assert "Dữ liệu của tôi được sử dụng" in page.inner_text("main")
    shot(page, "15-phone-vietnamese")
    page.goto(f"{url}/me/consents")
    assert "Sự đồng ý của tôi" in page.inner_text("main")
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]
    shot(page, "16-phone-consents-vietnamese")
    page.goto(f"{url}/me/report")
    shot(page, "17-phone-report")


def test_inspector_unseals_a_covert_access_for_the_citizen(
    stack: tuple[PortalEnv, Scenario], browser: Browser
) -> None:
    penv, _ = stack
    url = penv.url
    covert = penv.query(
        "population", SOCIAL_SERVICE, CITIZEN_A, ["status"], purpose="IDENTITY_VERIFICATION"
    )
    inspector = new_page(browser, viewport={"width": 1280, "height": 900})
    log_in(inspector, url, INSPECTOR, "inspector")

    def search_by_citizen() -> None:
        inspector.goto(f"{url}/inspect")
        inspector.fill("#f-subject", CITIZEN_A)
        inspector.fill("#f-reason", "Complaint 2026/41: citizen asks who checked her identity")
        inspector.select_option("#f-purpose", "IDENTITY_VERIFICATION")
        with inspector.expect_navigation():
            inspector.click("form.search-form button[type=submit]")
        assert CITIZEN_A not in inspector.url

    def found() -> bool:
        search_by_citizen()
        return inspector.locator(f"a[href='/inspect/records/{covert.record_id}']").count() > 0

    eventually(found, timeout=30, interval=0.3, what="the covert access in the log")
    assert "Sealed" in inspector.inner_text("table.hits")
    shot(inspector, "18-inspector-search-by-citizen")

    citizen = new_page(browser, viewport={"width": 1280, "height": 900})
    log_in(citizen, url, CITIZEN_A)
    headings = citizen.locator(".card h2").all_inner_texts()
    assert not any("Bộ Công an" in h for h in headings)  # hidden while sealed

    inspector.click(f"a[href='/inspect/records/{covert.record_id}']")
    inspector.click("a.button.danger")  # Unseal…
    assert inspector.url.endswith("/unseal")
    inspector.fill("#reason", "Court order 12/2026 lifts the secrecy of this check")
    shot(inspector, "19-inspector-unseal-confirm")
    with inspector.expect_navigation():
        inspector.click("form button.danger")
    assert "The entry is unsealed" in inspector.inner_text("main")

    until(
        citizen,
        lambda: any("Bộ Công an" in h for h in citizen.locator(".card h2").all_inner_texts()),
    )
    shot(citizen, "20-citizen-sees-unsealed-access")
