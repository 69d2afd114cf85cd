"""Legal representation in a real browser (Debian's Chromium driven by Playwright), English and
Vietnamese, over a whole instance whose central services share one injected clock.

The story, once in each language: the population register (the representation authority)
records that a parent represents their child, a minor; the social insurance agency asks the
child for consent; the child, logged in themself, cannot approve it (a minor's own approval does
not count); the parent logs in as themself, chooses to act for the child, sees the child's data
use and approves the request. Then the clock moves past the child's majority date. The child,
now an adult, logs in and sees who acted: "approved by your parent" on the consent, and in the
verified log of their data use both the approval and their parent's look at their history; they
approve a new request themselves; the parent can no longer act for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from cdx.consentpolicy import ConsentState
from cdx.ids import CitizenId
from tests.e2e.browser import chromium
from tests.e2e.portal_env import PortalEnv, start_portal_env
from tests.e2e.test_portal_browser import log_in, shot, until
from tests.integration.consent_env import fresh_citizen, request_consent
from tests.integration.representation_support import history, register
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("portal_browser")]

#: Per language: the browser locale, and what the pages must say.
STORY = {
    "en": {
        "locale": "en-GB",
        "child_name": "Nguyễn Minh Khang",
        "minor_refused": "Your legal representative decides",
        "acting": "You are acting for Nguyễn Minh Khang, as their parent",
        "approved_as_parent": "Approved by a parent (legal representative)",
        "approved_by_parent": "Approved by your parent",
        "log_approval": "The request was approved",
        "log_by": "your parent",
        "log_looked": "Your legal representative viewed your data use",
        "nobody": "The register has recorded nobody you represent.",
    },
    "vi": {
        "locale": "vi-VN",
        "child_name": "Trần Thị Mai",
        "minor_refused": "Người đại diện theo pháp luật của bạn quyết định",
        "acting": "Bạn đang thay mặt Trần Thị Mai, với tư cách cha hoặc mẹ",
        "approved_as_parent": "bởi cha hoặc mẹ (người đại diện theo pháp luật)",
        "approved_by_parent": "bởi cha hoặc mẹ của bạn",
        "log_approval": "Yêu cầu đã được chấp thuận",
        "log_by": "cha hoặc mẹ của bạn",
        "log_looked": "Người đại diện theo pháp luật của bạn đã xem việc sử dụng dữ liệu",
        "nobody": "Cơ quan đăng ký chưa ghi nhận người nào do bạn đại diện.",
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def penv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    built = start_portal_env(tmp_path_factory.mktemp("representation-e2e"), one_clock=True)
    try:
        yield built
    finally:
        built.close()


def page_in(browser: Browser, lang: str) -> Page:
    context = browser.new_context(ignore_https_errors=True, locale=STORY[lang]["locale"])
    return context.new_page()


def text(page: Page) -> str:
    return " ".join(page.inner_text("main").split())


def test_a_parent_approves_for_their_child_who_later_sees_who_acted(
    penv: PortalEnv, browser: Browser
) -> None:
    env, url = penv.consent_env, penv.url
    # The majority date: at least an hour away (so the first half of the story never crosses
    # it), at most a day and an hour.
    majority = (env.clock() + timedelta(hours=1)).date() + timedelta(days=1)
    families: dict[str, tuple[str, str, str]] = {}
    for lang, story in STORY.items():
        parent, child = fresh_citizen(), fresh_citizen()
        register(
            env,
            parent,
            child,
            majority_date=majority.isoformat(),
            represented_name=story["child_name"],
        )
        families[lang] = (parent, child, request_consent(env, child).id)

    # --- while the child is a minor ------------------------------------------------------------
    for lang, story in STORY.items():
        parent, child, pending = families[lang]
        minor = page_in(browser, lang)
        log_in(minor, url, child)
        minor.goto(f"{url}/me/consents")
        with minor.expect_navigation():
            minor.click(f"#consent-{pending} form[action$='/approve'] button")
        assert story["minor_refused"] in text(minor)
        shot(minor, f"30-{lang}-minor-cannot-approve")
        minor.context.close()

        page = page_in(browser, lang)
        log_in(page, url, parent)
        page.goto(f"{url}/me/acting-for")
        shot(page, f"31-{lang}-acting-for-choice")
        with page.expect_navigation():
            page.click("ul.relations form button")
        assert story["acting"] in text(page)  # the banner, on the child's data use
        page.goto(f"{url}/me/consents")
        assert page.locator("#acting-banner").count() == 1
        with page.expect_navigation():
            page.click(f"#consent-{pending} form[action$='/approve'] button")
        page.goto(f"{url}/me/consents/{pending}")
        assert story["approved_as_parent"] in text(page)
        shot(page, f"32-{lang}-parent-approved")
        page.context.close()
        assert _state(env, child, pending) is ConsentState.ACTIVE

    # The approvals and the parents' looks at the histories reach a cosigned checkpoint.
    for parent, child, _ in families.values():
        history(env, parent, child)

        def verified(child: str = child) -> bool:
            entries = history(env, child).entries
            kinds = {e.record.kind for e in entries if e.HasField("proof")}
            return {"consent_event", "representative_access"} <= kinds

        eventually(verified, timeout=30, what="the child's entries in a cosigned checkpoint")

    # --- the children come of age --------------------------------------------------------------
    now = env.clock()
    coming_of_age = datetime(majority.year, majority.month, majority.day, tzinfo=UTC)
    env.clock.offset = coming_of_age - now + timedelta(minutes=1)
    env.instance.sync_conf()  # a configuration issued at the new time

    for lang, story in STORY.items():
        parent, child, pending = families[lang]
        adult = page_in(browser, lang)
        log_in(adult, url, child)
        adult.goto(f"{url}/me/consents/{pending}")
        assert story["approved_by_parent"] in text(adult)
        shot(adult, f"33-{lang}-adult-sees-who-approved")
        adult.goto(f"{url}/me/access")
        until(adult, lambda a=adult: a.locator(".card .mark-verified").count() >= 2)
        seen = text(adult)
        assert story["log_approval"] in seen and story["log_by"] in seen
        assert story["log_looked"] in seen
        shot(adult, f"34-{lang}-adult-history")
        newer = request_consent(env, child).id
        adult.goto(f"{url}/me/consents")
        with adult.expect_navigation():
            adult.click(f"#consent-{newer} form[action$='/approve'] button")
        assert _state(env, child, newer) is ConsentState.ACTIVE
        adult.context.close()

        former = page_in(browser, lang)
        log_in(former, url, parent)
        former.goto(f"{url}/me/acting-for")
        assert story["nobody"] in text(former)
        former.context.close()


def _state(env: object, citizen: str, consent_id: str) -> ConsentState:
    service = env.consent.service  # type: ignore[attr-defined]
    return service.get_mine(CitizenId(citizen), consent_id).state  # type: ignore[no-any-return]
