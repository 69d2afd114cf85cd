"""The citizen's notification page (``/me/notifications``): what to be told and how, and the
notification service's client behind it.

The page relays the citizen's ID token to the notification service
(``cdx.v1.CitizenNotifications``), which takes whose preferences they are from the token: the
portal never names a citizen in the request. An address the service refuses (a line break, a
display name, anything but a plain mailbox) comes back to the same form with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdx import errors, rpc
from cdx.v1 import notify_pb2, notify_pb2_grpc
from portal.security import checked_form
from portal.web import call, flash, portal_of, redirect, render, require

#: The choices, in the order the page shows them (the service's category names).
CATEGORIES = (
    "every_access",
    "consent_access",
    "denials",
    "consent_requests",
    "unsealed",
    "representative_actions",
)
_TO_PB = {
    "every_access": notify_pb2.EVERY_ACCESS,
    "consent_access": notify_pb2.CONSENT_ACCESS,
    "denials": notify_pb2.DENIALS,
    "consent_requests": notify_pb2.CONSENT_REQUESTS,
    "unsealed": notify_pb2.UNSEALED,
    "representative_actions": notify_pb2.REPRESENTATIVE_ACTIONS,
}
_FROM_PB = {int(v): k for k, v in _TO_PB.items()}
MAX_ADDRESS_CHARS = 300


@dataclass(frozen=True)
class NotifyChoices:
    """A citizen's notification preferences as the page shows them."""

    categories: tuple[str, ...] = ()
    email: str = field(default="", repr=False)
    app_handle: str = field(default="", repr=False)
    language: str = "vi"
    version: int = 0


class NotifyBackend(Protocol):
    """The notification service, as the portal uses it (``GrpcNotifyClient``)."""

    def preferences(self, token: str) -> NotifyChoices:
        """Raises ``UnavailableError`` when the service cannot be reached."""
        ...

    def set_preferences(self, token: str, choices: NotifyChoices) -> NotifyChoices:
        """Raises ``InvalidAddressError`` for an address the service will not send to."""
        ...


def _from_pb(msg: notify_pb2.NotifyPreferences) -> NotifyChoices:
    return NotifyChoices(
        categories=tuple(_FROM_PB[c] for c in msg.categories if c in _FROM_PB),
        email=msg.email,
        app_handle=msg.app_handle,
        language=msg.language or "vi",
        version=msg.version,
    )


class GrpcNotifyClient:
    """``NotifyBackend`` over ``cdx.v1.CitizenNotifications`` (one long-lived channel)."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._address = address
        self._identity = identity
        self._timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._bound = ""
        self._stub: notify_pb2_grpc.CitizenNotificationsStub | None = None

    def _stub_now(self) -> notify_pb2_grpc.CitizenNotificationsStub:
        address = self._address() if callable(self._address) else self._address
        if not address:
            raise errors.UnavailableError("no notification service address is configured")
        with self._lock:
            if self._stub is None or address != self._bound:
                if self._channel is not None:
                    self._channel.close()
                self._channel = rpc.secure_channel(address, self._identity)
                self._stub = notify_pb2_grpc.CitizenNotificationsStub(self._channel)
                self._bound = address
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None

    def preferences(self, token: str) -> NotifyChoices:
        response = rpc.invoke(
            self._stub_now().GetPreferences,
            notify_pb2.GetPreferencesRequest(),
            timeout=self._timeout,
            metadata=(("authorization", f"Bearer {token}"),),
        )
        return _from_pb(response)

    def set_preferences(self, token: str, choices: NotifyChoices) -> NotifyChoices:
        request = notify_pb2.SetPreferencesRequest(
            preferences=notify_pb2.NotifyPreferences(
                categories=[_TO_PB[c] for c in choices.categories],
                email=choices.email,
                app_handle=choices.app_handle,
                language=choices.language,
            )
        )
        response = rpc.invoke(
            self._stub_now().SetPreferences,
            request,
            timeout=self._timeout,
            metadata=(("authorization", f"Bearer {token}"),),
        )
        return _from_pb(response)


def _backend(request: Request) -> NotifyBackend:
    backend = portal_of(request).notify
    if backend is None:
        raise errors.UnavailableError("this portal has no notification service")
    return backend


async def notifications_page(request: Request) -> Response:
    _, token = require(request, "citizen")
    choices = await call(_backend(request).preferences, token)
    return render(request, "notifications.html", choices=choices, categories=CATEGORIES, problem="")


async def save_notifications(request: Request) -> Response:
    _, token = require(request, "citizen")
    form = await checked_form(request)
    language = str(form.get("language", "vi"))
    choices = NotifyChoices(
        categories=tuple(c for c in CATEGORIES if form.get(f"category.{c}") == "on"),
        email=str(form.get("email", "")).strip()[:MAX_ADDRESS_CHARS],
        app_handle=str(form.get("app_handle", "")).strip()[:MAX_ADDRESS_CHARS],
        language=language if language in ("en", "vi") else "vi",
    )
    try:
        await call(_backend(request).set_preferences, token, choices)
    except errors.InvalidAddressError:
        return render(
            request,
            "notifications.html",
            status_code=400,
            choices=choices,
            categories=CATEGORIES,
            problem="notify.invalid_address",
        )
    flash(request, "flash.notify.saved")
    return redirect("/me/notifications")


routes = [
    Route("/me/notifications", notifications_page, methods=["GET"]),
    Route("/me/notifications", save_notifications, methods=["POST"]),
]
