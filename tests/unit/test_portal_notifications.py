"""The citizen's notification page: shows the choices, saves them through the notification
service with the citizen's own token (CSRF-checked), and brings a refused address back to the
form with the reason."""

from __future__ import annotations

from dataclasses import replace

from starlette.testclient import TestClient

from cdx import errors
from notify.addresses import check_email
from portal.app import create_app
from portal.notifications import NotifyChoices
from tests.unit.portal_fakes import ALICE, Harness, csrf_of, harness


class FakeNotify:
    """The notification service: the token says whose preferences (as the real one does)."""

    def __init__(self, h: Harness) -> None:
        self._h = h
        self.stored: dict[str, NotifyChoices] = {}

    def _whose(self, token: str) -> str:
        principal = self._h.idp.verify(token, self._h.world.clock.now)
        if principal.role != "citizen":
            raise errors.PermissionDeniedError("citizens only")
        return principal.subject

    def preferences(self, token: str) -> NotifyChoices:
        return self.stored.get(self._whose(token), NotifyChoices())

    def set_preferences(self, token: str, choices: NotifyChoices) -> NotifyChoices:
        if choices.email:
            check_email(choices.email)
        stored = replace(choices, version=self.preferences(token).version + 1)
        self.stored[self._whose(token)] = stored
        return stored


def _client(h: Harness, notify: FakeNotify | None) -> TestClient:
    app = create_app(h.config, h.consent, h.audit, h.idp, h.conf_source, h.world.clock,
                     sessions=h.sessions, notify_client=notify)  # fmt: skip
    return TestClient(app, base_url="https://portal.test", follow_redirects=False)


def test_choices_are_shown_and_saved_for_the_logged_in_citizen() -> None:
    h = harness()
    notify = FakeNotify(h)
    client = _client(h, notify)
    h.login(client, ALICE)
    page = client.get("/me/notifications")
    assert page.status_code == 200
    assert 'id="category-every_access"' in page.text and "Notifications" in page.text
    saved = client.post(
        "/me/notifications",
        data={
            "csrf_token": csrf_of(page.text),
            "category.every_access": "on",
            "category.denials": "on",
            "category.made_up": "on",
            "email": " an@example.vn ",
            "app_handle": "app:an",
            "language": "vi",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/me/notifications"
    stored = notify.stored[ALICE]
    assert stored.categories == ("every_access", "denials")
    assert (stored.email, stored.app_handle, stored.language) == ("an@example.vn", "app:an", "vi")
    again = client.get("/me/notifications").text
    assert "saved" in again  # the flash
    assert 'value="an@example.vn"' in again
    assert 'id="category-every_access" name="category.every_access" checked' in again


def test_a_refused_address_comes_back_to_the_form_with_the_reason() -> None:
    h = harness()
    notify = FakeNotify(h)
    client = _client(h, notify)
    h.login(client, ALICE)
    page = client.get("/me/notifications")
    refused = client.post(
        "/me/notifications",
        data={"csrf_token": csrf_of(page.text), "email": "An <an@example.vn>", "language": "en"},
    )
    assert refused.status_code == 400
    assert 'class="error-summary"' in refused.text and 'aria-invalid="true"' in refused.text
    assert ALICE not in notify.stored


def test_without_its_csrf_token_or_a_citizen_session_nothing_is_saved() -> None:
    h = harness()
    notify = FakeNotify(h)
    client = _client(h, notify)
    assert client.get("/me/notifications").status_code == 303  # to the login page
    h.login(client, ALICE)
    forged = client.post("/me/notifications", data={"email": "x@evil.example"})
    assert forged.status_code == 403
    assert notify.stored == {}
    inspector = _client(h, notify)
    h.login(inspector, "dpa-inspector-1", role="inspector")
    assert inspector.get("/me/notifications").status_code == 403


def test_a_portal_without_a_notification_service_says_it_is_unavailable() -> None:
    h = harness()
    client = _client(h, None)
    h.login(client, ALICE)
    assert client.get("/me/notifications").status_code == 503
