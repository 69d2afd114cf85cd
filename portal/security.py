"""Web security for the portal: session rotation, CSRF tokens, security headers.

- Sessions live server-side (``portal.sessions``): the cookie holds only a random id; it is
  ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` (named ``__Host-cdx_session``) unless the
  operator explicitly runs with insecure cookies for a loopback demo over plain HTTP.
  ``new_session`` gives the session a new id at login and logout (no fixation, and a copy of
  the old cookie opens nothing).
- Every form carries a per-session CSRF token (synchronizer token) that ``checked_form``
  compares in constant time; unsafe requests from another origin are refused before that.
- Every response carries a strict CSP (no inline script or style, ``frame-ancestors 'none'``),
  ``nosniff``, ``Referrer-Policy: same-origin`` and friends; pages are ``no-store``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal.sessions import rotate

CSRF_FIELD = "csrf_token"
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


def new_session(request: Request, **values: Any) -> None:
    """Replace the session under a new id (at login and logout: no fixation, and the old
    cookie stops working), keeping the language choice."""
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    request.session.update(values)
    request.session["csrf"] = secrets.token_urlsafe(32)
    rotate(request.session)


def csp_allowing_form_targets(origins: list[str]) -> str:
    """The CSP for a page whose logout form ends at the identity providers' ``origins``:
    browsers apply ``form-action`` to every redirect that follows a form post."""
    extra = "".join(f" {o}" for o in origins)
    return CSP.replace("form-action 'self'", f"form-action 'self'{extra}")


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
