"""What every page handler shares: the portal's parts, who is logged in, rendering with the
right language, calling blocking gRPC clients off the event loop, and error pages.

Errors map to pages here and nowhere else: a resource the user may not see is a plain 404 (the
same page as a missing one, so ids cannot be probed), an expired login goes back to the login
page, an unavailable backend is a 503, anything unexpected a 500 with a correlation id (the stack
trace stays in the log, which never holds a national id).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdx import errors
from cdx.globalconf import VerifiedGlobalConf
from portal.backends import (
    AuditBackend,
    ConfSource,
    ConsentBackend,
    IdentityProvider,
    Login,
    Principal,
    Role,
    TileFetcher,
)
from portal.config import PortalConfig
from portal.display import Names
from portal.i18n import LANGUAGE_NAMES, LANGUAGES, Catalogue, Translator, negotiate
from portal.monitor import LogMonitor
from portal.requests_backend import RequestsBackend
from portal.security import CsrfRefusedError, csp_allowing_form_targets, csrf_token
from portal.verify import LogTrust

if TYPE_CHECKING:
    from portal.notifications import NotifyBackend

log = logging.getLogger("portal")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Portal:
    """The parts of one portal app (kept in ``app.state.portal``)."""

    config: PortalConfig
    consent: ConsentBackend
    audit: AuditBackend
    idp: IdentityProvider
    conf_source: ConfSource
    now: Callable[[], datetime]
    catalogue: Catalogue
    templates: Jinja2Templates
    monitor: LogMonitor
    #: The log's tile endpoint a configuration names (``portal.tileproofs.TileEndpoints``).
    tile_endpoint: Callable[[VerifiedGlobalConf], TileFetcher | None]
    #: The notification service (``portal.notifications``); ``None``: the page says unavailable.
    notify: NotifyBackend | None = None
    #: Data-subject requests (the consent service's request APIs); ``None``: not offered.
    requests: RequestsBackend | None = None

    def conf(self) -> VerifiedGlobalConf:
        return self.conf_source.current()

    def tiles(self) -> TileFetcher | None:
        """Where proofs come from: the tile endpoint of global configuration (``None``: none
        is configured, the log's API then serves them)."""
        return self.tile_endpoint(self.conf())

    def trust(self) -> LogTrust:
        return LogTrust.from_conf(self.conf())


class PageError(Exception):
    """Ends a web request with a page. Deliberately not a ``CdxError``: those form the wire's
    error vocabulary (codes peers map back to classes), these never leave the portal."""


class LoginRequiredError(PageError):
    """No valid session: the user must log in (again)."""


class WrongRoleError(PageError):
    """Logged in, but this page belongs to the other role."""


class RecordPendingError(PageError):
    """The record exists but is not in a published checkpoint yet."""


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def language(request: Request) -> str:
    chosen = request.session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return negotiate(
        request.headers.get("accept-language"), portal_of(request).config.default_language
    )


def translator(request: Request) -> Translator:
    return portal_of(request).catalogue.translator(language(request))


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking client call in the thread pool (gRPC stubs are synchronous)."""
    return await run_in_threadpool(fn, *args, **kwargs)


def current_user(request: Request) -> tuple[Principal, str] | None:
    """The logged-in user and the ID token relayed for them, or ``None``.

    The session holds what the login verified; it ends when the ID token expires.
    """
    user = request.session.get("user")
    if not isinstance(user, dict):
        return None
    try:
        expires_at = datetime.fromtimestamp(float(user["exp"]), tz=UTC)
        principal = Principal(
            str(user["sub"]),
            "inspector" if user["role"] == "inspector" else "citizen",
            str(user.get("name", "")),
            expires_at,
            user.get("acting_for"),
            str(user.get("acting_name", "")),
            str(user.get("acting_kind", "")),
        )
        token = str(user["id_token"])
    except (KeyError, TypeError, ValueError):
        request.session.pop("user", None)
        return None
    if portal_of(request).now() >= expires_at:
        log.info("session ended: the ID token expired")
        request.session.pop("user", None)
        flash(request, "flash.session_expired")
        return None
    return principal, token


def session_user(login: Login) -> dict[str, Any]:
    """What the session keeps of a login (server-side; never in the cookie)."""
    p = login.principal
    return {
        "sub": p.subject,
        "role": p.role,
        "name": p.name,
        "exp": p.expires_at.timestamp(),
        "acting_for": p.acting_for,
        "acting_name": p.acting_name,
        "acting_kind": p.acting_kind,
        "issuer": login.issuer,
        "id_token": login.id_token,
    }


def act_for(request: Request, person: str | None, name: str = "", kind: str = "") -> None:
    """From now on the logged-in user acts for ``person`` (``None``: for themself). The
    services check the relation on every call; this only remembers the choice."""
    user = request.session.get("user")
    if not isinstance(user, dict):
        return
    user = {**user, "acting_for": person, "acting_name": name if person else ""}
    user["acting_kind"] = kind if person else ""
    request.session["user"] = user


def require(request: Request, role: Role) -> tuple[Principal, str]:
    """The logged-in user with ``role`` and their token.

    Raises:
        LoginRequiredError: nobody is logged in.
        WrongRoleError: the user has the other role.
    """
    user = current_user(request)
    if user is None:
        raise LoginRequiredError()
    if user[0].role != role:
        raise WrongRoleError()
    return user


def flash(request: Request, key: str) -> None:
    """Queue a status message (a catalogue key) for the next page."""
    messages = list(request.session.get("flash", []))[-4:]
    messages.append(key)
    request.session["flash"] = messages


def safe_next(target: str | None, default: str) -> str:
    """A same-site path to go back to (no open redirect)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return default
    return target


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    """Render a page with the language, the user, the CSRF token and display names."""
    portal = portal_of(request)
    t = translator(request)
    user = current_user(request)
    names = None
    try:
        names = Names(portal.conf(), t)
    except errors.CdxError:
        names = None  # the error page still renders without configuration
    flashes = request.session.pop("flash", []) if status_code < 400 else []
    base = {
        "t": t,
        "lang": t.lang,
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        "user": user[0] if user else None,
        "csrf_token": csrf_token(request),
        "names": names,
        "flashes": flashes,
        "here": request.url.path,
    }
    base.update(context)
    response = portal.templates.TemplateResponse(request, template, base, status_code=status_code)
    if user is not None:
        # The logout form ends at the identity provider (RP-initiated logout): browsers check a
        # form's whole redirect chain against the page's form-action.
        origins = sorted({_origin(o.issuer) for o in portal.idp.options()})
        response.headers["content-security-policy"] = csp_allowing_form_targets(origins)
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- error pages -------------------------------------------------------------------------------


def _error_page(request: Request, status: int, key: str, **extra: Any) -> Response:
    return render(
        request,
        "error.html",
        status_code=status,
        title_key=f"error.{key}.title",
        message_key=f"error.{key}.message",
        **extra,
    )


async def on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequiredError):
        return redirect("/login?next=" + quote(safe_next(request.url.path, "/"), safe="/"))
    if isinstance(exc, errors.UnauthenticatedError | errors.TokenError):
        log.warning("a backend refused the session's token: %s", exc.code)
        request.session.pop("user", None)
        return redirect("/login")
    if isinstance(exc, CsrfRefusedError):
        return _error_page(request, 403, "csrf")
    if isinstance(exc, WrongRoleError):
        return _error_page(request, 403, "role")
    if isinstance(exc, RecordPendingError):
        return _error_page(request, 404, "pending")
    if isinstance(exc, errors.RepresentationDeniedError):
        # The relation ended (or the represented came of age) since it was chosen: back to
        # acting for oneself, and say why.
        log.info("a representative's call was refused: %s", exc.code)
        act_for(request, None)
        flash(request, f"flash.acting.{exc.code}")
        return redirect("/me/acting-for")
    if isinstance(exc, errors.MinorNeedsRepresentativeError):
        return _error_page(request, 403, "minor")
    if isinstance(exc, errors.NotFoundError | errors.PermissionDeniedError):
        return _error_page(request, 404, "not_found")
    if isinstance(exc, errors.ReasonRequiredError):
        return _error_page(request, 400, "reason")
    if isinstance(exc, errors.FailedPreconditionError):  # e.g. an invalid consent transition
        return _error_page(request, 409, "transition")
    if isinstance(exc, errors.InvalidArgumentError):
        return _error_page(request, 400, "bad_request")
    if isinstance(
        exc, errors.UnavailableError | errors.DeadlineExceededError | errors.ConfExpiredError
    ):
        log.warning("backend unavailable: %s", getattr(exc, "code", "unavailable"))
        return _error_page(request, 503, "unavailable")
    return await on_unexpected(request, exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _error_page(request, 404, "not_found")
    if status == 405:
        return _error_page(request, 405, "method")
    if status == 413:
        return _error_page(request, 413, "bad_request")
    return _error_page(request, status if 400 <= status < 600 else 500, "bad_request")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    correlation = uuid.uuid4().hex
    # Paths never hold a national id; the trace stays in the log, never on the page.
    log.error(
        "internal error on %s %s (correlation id %s)",
        request.method,
        request.url.path,
        correlation,
        exc_info=exc,
    )
    try:
        return _error_page(request, 500, "internal", correlation=correlation)
    except Exception:  # the error page itself failed: plain text, still no details
        return Response(f"Internal error ({correlation})", status_code=500, media_type="text/plain")


class InternalErrorMiddleware:
    """Turns an unexpected exception into the 500 page inside the session and header
    middleware (so the error page gets the security headers too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await on_unexpected(Request(scope, receive), exc)
            await response(scope, receive, send)
