"""Notifications in a real browser (Debian's Chromium driven by Playwright), English and
Vietnamese: the citizen chooses in the portal to be told about every access by e-mail; an
agency reads her data; the e-mail arrives at a real SMTP server with a link that opens the
entry in the portal, verified against the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser import chromium
from tests.e2e.test_portal_browser import log_in, shot, until
from tests.integration.consent_env import SOCIAL
from tests.integration.notify_env import POPULATION_SERVICE, NotifyEnv, start_notify_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("notify_browser")]

CASES = {
    # language: (citizen, address, the page's title, the e-mail's subject says)
    "en": ("079090000001", "an.nguyen@example.vn", "Notifications", "used your data"),
    "vi": ("079090000002", "binh.tran@example.vn", "Thông báo", "đã sử dụng dữ liệu"),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyEnv]:
    e = start_notify_env(tmp_path_factory.mktemp("notify-e2e"), portal=True)
    try:
        yield e
    finally:
        e.close()


@pytest.mark.parametrize("language", ["en", "vi"])
def test_citizen_chooses_is_emailed_and_the_link_opens_the_verified_entry(
    env: NotifyEnv, browser: Browser, language: str
) -> None:
    citizen, address, title, subject = CASES[language]
    locale = "en-GB" if language == "en" else "vi-VN"
    context = browser.new_context(ignore_https_errors=True, locale=locale)
    page = context.new_page()
    url = env.stack.portal.url
    try:
        log_in(page, url, citizen)
        page.goto(f"{url}/me/notifications")
        assert page.locator("h1").inner_text() == title
        page.check("#category-every_access")
        page.fill("#email", address)
        page.select_option("#language", language)
        with page.expect_navigation():
            page.click("form.stack button[type=submit]")
        assert page.locator(".flash").count() == 1
        assert page.locator("#category-every_access").is_checked()
        assert page.input_value("#email") == address
        shot(page, f"notifications-{language}")

        response = env.query(SOCIAL, POPULATION_SERVICE, citizen, ["full_name", "birth_date"])
        assert env.sink.wait_for(1, to=address, timeout=30), "no e-mail arrived"
        (mail,) = env.sink.messages(to=address)
        assert subject in mail.subject
        assert citizen not in mail.raw.decode("utf-8", "replace")
        (link,) = [w for w in mail.text.split() if w.startswith(f"{url}/me/access/")]
        assert link.rsplit("/", 1)[1] in {response.record_id, response.provider_record_id}

        page.goto(link)  # the citizen follows the link from the e-mail
        until(page, lambda: page.locator("p.lead .mark-verified").count() == 1)
        assert page.locator("html").get_attribute("lang") == language
        shot(page, f"notified-entry-{language}")
    finally:
        context.close()


def test_an_address_with_a_line_break_is_refused_on_the_page(
    env: NotifyEnv, browser: Browser
) -> None:
    context = browser.new_context(ignore_https_errors=True, locale="en-GB")
    page = context.new_page()
    url = env.stack.portal.url
    try:
        log_in(page, url, "079090000003")
        page.goto(f"{url}/me/notifications")
        page.check("#category-denials")
        # A display name and a second recipient: not a plain mailbox.
        page.fill("#email", "Chi <chi@example.vn>, victim@evil.example")
        page.click("form.stack button[type=submit]")
        page.wait_for_selector(".error-summary")
        assert page.locator("#email").get_attribute("aria-invalid") == "true"
        page.goto(f"{url}/me/notifications")
        assert page.input_value("#email") == ""  # nothing was stored
    finally:
        context.close()
