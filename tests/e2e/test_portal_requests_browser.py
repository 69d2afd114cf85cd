"""Data-subject requests in a real browser (Debian's Chromium driven by Playwright), in English
and in Vietnamese, over a whole instance: a citizen files an objection in the portal, the
agency answers it with ``cdx requests``, the citizen sees the answer; the citizen asks for
their data, downloads the signed bundle and the keys from the portal, and ``cdx audit bundle
verify`` checks it offline. An inspector sees an overdue request on the console.
Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cdx.clock import utcnow
from tests.cdx_command import run_cdx
from tests.e2e.browser import chromium
from tests.e2e.portal_env import CITIZEN_A, PortalEnv, play_demo_scenario, start_portal_env
from tests.e2e.test_portal_browser import log_in, new_page, shot, until
from tests.integration.consent_env import SOCIAL_SUBSYSTEM, fresh_citizen
from tests.integration.requests_env import TAX_SUBSYSTEM, file_request

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("portal_browser")]

#: What each language shows for the steps the test walks through.
WORDS = {
    "en": {
        "title": "My requests",
        "received": "Received",
        "completed": "Completed",
        "download": "Download the signed bundle",
        "overdue": "Overdue requests",
        "step": "A step of your data-subject request",
    },
    "vi": {
        "title": "Yêu cầu của tôi",
        "received": "Đã nhận",
        "completed": "Đã hoàn thành",
        "download": "Tải gói có chữ ký",
        "overdue": "Yêu cầu quá hạn",
        "step": "Một bước trong yêu cầu của bạn",
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    penv = start_portal_env(tmp_path_factory.mktemp("portal-requests"))
    try:
        play_demo_scenario(penv)
        yield penv
    finally:
        penv.close()


def in_language(page: Page, lang: str) -> None:
    if page.get_attribute("html", "lang") != lang:
        with page.expect_navigation():
            page.click(f"button[lang={lang}]")
    assert page.get_attribute("html", "lang") == lang


def agency(penv: PortalEnv, *argv: str) -> str:
    """``cdx requests ...`` as the social insurance agency, on the instance's data directory."""
    root = str(penv.consent_env.instance.root)
    result = run_cdx(["requests", *argv, "--agency", SOCIAL_SUBSYSTEM, "--data", root])
    assert result.rc == 0, result.err
    return result.out


def download(page: Page, selector: str, target: Path) -> Path:
    with page.expect_download() as started:
        page.click(selector)
    started.value.save_as(target)
    return target


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_citizen_objects_the_agency_answers_and_the_bundle_verifies_offline(
    stack: PortalEnv, browser: Browser, lang: str, tmp_path: Path
) -> None:
    url = stack.url
    words = WORDS[lang]
    citizen = CITIZEN_A if lang == "en" else fresh_citizen()
    page = new_page(browser, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    log_in(page, url, citizen)
    in_language(page, lang)
    page.goto(f"{url}/me/requests")
    assert words["title"] in page.inner_text("h1")

    # The objection, filed with the form.
    page.select_option("#f-kind", "objection")
    page.select_option("#f-addressee", SOCIAL_SUBSYSTEM)
    page.select_option("#f-purpose", "SOCIAL_BENEFIT_ELIGIBILITY")
    page.fill("#f-details", f"Objection {lang}: do not use my income for benefits.")
    shot(page, f"30-{lang}-citizen-files-objection")
    with page.expect_navigation():
        page.click("#file-request")
    request_id = page.url.rsplit("/", 1)[1]
    assert page.inner_text("#request-state") == words["received"]

    # The agency answers it from the command line, in time.
    assert request_id in agency(stack, "list")
    agency(stack, "acknowledge", request_id)
    answer = f"Answer {lang}: your income is no longer used for benefit checks."
    agency(stack, "complete", request_id, "--answer", answer)
    page.reload()
    assert page.inner_text("#request-state") == words["completed"]
    assert page.inner_text("#request-answer") == answer
    assert len(page.locator("#request-steps li").all()) == 3
    shot(page, f"31-{lang}-citizen-sees-answer")

    # Each of the three steps is in the citizen's history, verified against the cosigned log.
    page.goto(f"{url}/me/access")
    steps = page.locator(".card", has_text=words["step"])
    until(page, lambda: steps.locator(".mark-verified").count() >= 3, timeout=60)
    shot(page, f"31b-{lang}-request-steps-in-history")

    # The citizen asks for their data and checks the bundle offline.
    page.goto(f"{url}/me/requests")
    with page.expect_navigation():
        page.click("#request-access")
    assert words["download"] in page.inner_text("#bundle-download")
    shot(page, f"32-{lang}-access-bundle-ready")
    bundle = download(page, "#bundle-download", tmp_path / "bundle.json")
    log_key = download(page, "a[href='/.well-known/cdx/log.vkey']", tmp_path / "log.vkey")
    jwks = download(page, "a[href='/.well-known/cdx/jwks.json']", tmp_path / "jwks.json")
    witnesses = download(
        page, "a[href='/.well-known/cdx/witnesses.vkeys']", tmp_path / "witnesses.vkeys"
    )
    command = page.inner_text("pre.command")
    assert command.startswith("cdx audit bundle verify") and "--quorum 2" in command
    verified = run_cdx(
        ["audit", "bundle", "verify", str(bundle), "--log-key", f"@{log_key}",
         "--jwks", str(jwks), "--witness-keys", str(witnesses), "--quorum", "2"]
    )  # fmt: skip
    assert verified.rc == 0, verified.err
    assert verified.out.startswith("VALID: access bundle of request")
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(bundle.read_bytes().replace(citizen.encode(), b"079090000009", 1))
    refused = run_cdx(
        ["audit", "bundle", "verify", str(tampered), "--log-key", f"@{log_key}",
         "--jwks", str(jwks)]
    )  # fmt: skip
    assert refused.rc == 1 and refused.err.startswith("INVALID:")


def test_an_overdue_request_is_on_the_inspectors_console(
    stack: PortalEnv, browser: Browser
) -> None:
    env = stack.consent_env
    citizen = fresh_citizen()
    week_ago = timedelta(days=-7)
    env.clock.offset = week_ago  # the consent service's injected clock
    try:
        late = file_request(
            env,
            citizen,
            addressee=TAX_SUBSYSTEM,
            purpose="TAX_ASSESSMENT",
            token=env.token(citizen, now=utcnow() + week_ago),
        )
    finally:
        env.clock.offset = timedelta(0)
    for lang in ("en", "vi"):
        page = new_page(browser, viewport={"width": 1280, "height": 900})
        log_in(page, stack.url, "dpa-inspector-1", "inspector")
        in_language(page, lang)
        page.goto(f"{stack.url}/inspect/requests")
        table = page.inner_text("#overdue-requests")
        assert late.id in table and citizen not in page.inner_text("main")
        assert WORDS[lang]["overdue"] in page.inner_text("main")
        shot(page, f"33-{lang}-inspector-overdue-requests")
