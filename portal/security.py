"""Web security for the portal: encrypted session cookies, CSRF tokens, security headers.

- Sessions live in one cookie sealed with AES-256-GCM (``cdx.crypto.aead_seal``): the browser
  holds the user's token but can neither read it nor change it; the cookie is ``HttpOnly``,
  ``SameSite=Lax`` and ``Secure`` (named ``__Host-cdx_session``) unless the operator explicitly
  runs with insecure cookies for a loopback demo over plain HTTP. Sessions end after an idle
  period and after an absolute lifetime, and the portal stays stateless (replicas share the key).
- Every form carries a per-session CSRF token (synchronizer token) that ``checked_form``
  compares in constant time; unsafe requests from another origin are refused before that.
- Every response carries a strict CSP (no inline script or style, ``frame-ancestors 'none'``),
  ``nosniff``, ``Referrer-Policy: same-origin`` and friends; pages are ``no-store``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdx import crypto, errors

SESSION_AAD = b"cdx/portal-session/v1\n"
SECURE_COOKIE = "__Host-cdx_session"
INSECURE_COOKIE = "cdx_session"
CSRF_FIELD = "csrf_token"
MAX_COOKIE_BYTES = 3800
SESSION_REFRESH_S = 60
MAX_FORM_FIELDS = 40
MAX_FORM_PART_BYTES = 16 * 1024
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class CsrfRefusedError(Exception):
    """A form arrived without a valid CSRF token, or an unsafe request from another origin.

    Not a ``CdxError``: those are the wire's error vocabulary; this one only ends a web request.
    """


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (and HSTS when served securely)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if self.hsts:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
                if not static:  # pages hold personal data: never cache them
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SessionMiddleware:
    """Keeps ``scope["session"]`` in an encrypted, authenticated cookie."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: bytes,
        secure: bool,
        now_fn: Callable[[], datetime],
        idle: timedelta = timedelta(minutes=30),
        lifetime: timedelta = timedelta(hours=12),
    ) -> None:
        self.app = app
        self.key = key
        self.secure = secure
        self.now_fn = now_fn
        self.idle = idle
        self.lifetime = lifetime
        self.cookie = SECURE_COOKIE if secure else INSECURE_COOKIE

    def _load(self, raw: str | None, now: float) -> tuple[dict[str, Any], float]:
        """The session in the cookie and when it was last written (0 when there is none)."""
        if not raw or len(raw) > MAX_COOKIE_BYTES:
            return {}, 0.0
        try:
            sealed = base64.urlsafe_b64decode(raw.encode("ascii"))
            data = json.loads(crypto.aead_open(self.key, sealed, SESSION_AAD))
        except (ValueError, binascii.Error, UnicodeError, errors.CdxError):
            return {}, 0.0  # tampered, truncated or from an old key: start afresh
        if not isinstance(data, dict) or not isinstance(data.get("s"), dict):
            return {}, 0.0
        born, seen = data.get("born"), data.get("seen")
        if not isinstance(born, int | float) or not isinstance(seen, int | float):
            return {}, 0.0
        if now - seen > self.idle.total_seconds() or now - born > self.lifetime.total_seconds():
            return {}, 0.0
        session: dict[str, Any] = data["s"]
        session["_born"] = born
        return session, float(seen)

    def _dump(self, session: dict[str, Any], now: float) -> str:
        body = {k: v for k, v in session.items() if k != "_born"}
        born = session.get("_born", now)
        plain = json.dumps({"s": body, "born": born, "seen": now}, separators=(",", ":"))
        sealed = crypto.aead_seal(self.key, plain.encode(), SESSION_AAD)
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [
            f"{self.cookie}={value}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/static/"):
            await self.app(scope, receive, send)  # static files need no session
            return
        now = self.now_fn().timestamp()
        cookies = HTTPConnection(scope).cookies
        had_cookie = self.cookie in cookies
        session, seen = self._load(cookies.get(self.cookie), now)
        before = json.dumps(session, sort_keys=True, default=str)
        scope["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope["session"]
                headers = MutableHeaders(scope=message)
                changed = json.dumps(current, sort_keys=True, default=str) != before
                # Rewrite only on a change or to slide the idle limit (not on every request:
                # an older request finishing late must not undo a login or a logout).
                if current and (changed or now - seen >= SESSION_REFRESH_S):
                    value = self._dump(current, now)
                    max_age = int(self.idle.total_seconds())
                    headers.append("set-cookie", self._cookie(value, max_age))
                elif not current and had_cookie:
                    headers.append("set-cookie", self._cookie("", 0))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def new_session(request: Request, **values: Any) -> None:
    """Replace the session (at login and logout: no fixation), keeping the language choice."""
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    request.session.update(values)
    request.session["csrf"] = secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def _same_origin(request: Request) -> bool:
    """Refuse cross-site unsafe requests by Fetch metadata and Origin (defence in depth)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":  # opaque origin: trust it only with the browser's same-origin word
        return fetch_site == "same-origin"
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked_form(request: Request) -> FormData:
    """Read a posted form and check its CSRF token and origin.

    Raises:
        CsrfRefusedError: the token is missing or wrong, or the request comes from another site.
    """
    if not _same_origin(request):
        raise CsrfRefusedError("cross-site request refused")
    form = await request.form(
        max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_PART_BYTES
    )
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not secrets.compare_digest(sent.encode(), expected.encode())
    ):
        raise CsrfRefusedError("missing or invalid form token")
    return form
