"""Pages every visitor sees: home, logging in and out through an OpenID provider, the language
switch and the health endpoint.

Login (OIDC Core §3.1, authorization code flow with PKCE): ``/login`` lists the anchored
providers; ``/login/start`` remembers ``state``, ``nonce`` and the PKCE verifier in the
(server-side) session and sends the browser to the provider; ``/auth/callback`` takes the code
back, checks ``state``, and lets ``portal.identity`` exchange the code and verify the ID token.
Only then does the session get a new id and the user. Every failure shows the login page with
its own message, never a stack trace. Logout ends the session (every copy of the cookie) and,
where the provider offers it, ends the provider's session too (RP-initiated logout).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cdx import errors
from portal.backends import LoginRequest
from portal.i18n import LANGUAGES
from portal.security import checked_form, new_session
from portal.web import (
    call,
    current_user,
    flash,
    language,
    portal_of,
    redirect,
    render,
    safe_next,
    session_user,
)

log = logging.getLogger("portal")
HOME = {"citizen": "/me/access", "inspector": "/inspect"}
AREA = {"citizen": "/me/", "inspector": "/inspect"}
CALLBACK_PATH = "/auth/callback"
LOGGED_OUT_PATH = "/logged-out"
PENDING_KEY = "oidc"
MAX_PENDING = 3  # logins started in other tabs stay valid, within limits
PENDING_TTL_S = 600
MAX_PARAM = 2048

#: The message for each way a login can fail (catalogue keys; most specific first).
LOGIN_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (errors.TokenSignatureError, "login.error.signature"),
    (errors.TokenAlgorithmError, "login.error.algorithm"),
    (errors.TokenNonceError, "login.error.nonce"),
    (errors.TokenExpiredError, "login.error.expired"),
    (errors.TokenAudienceError, "login.error.audience"),
    (errors.TokenKeyUnknownError, "login.error.key"),
    (errors.TokenError, "login.error.token"),
    (errors.LoginFailedError, "login.error.refused"),
    (errors.UnavailableError, "login.error.unavailable"),
    (errors.NotFoundError, "login.error.unknown_idp"),
    (errors.InvalidArgumentError, "login.error.unknown_idp"),  # an issuer URL CDX may not use
)


def _base_url(request: Request) -> str:
    configured = portal_of(request).config.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def callback_url(request: Request) -> str:
    """The redirect URI registered with the identity provider."""
    return _base_url(request) + CALLBACK_PATH


async def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return redirect("/login")
    return redirect(HOME[user[0].role])


def _login_page(
    request: Request, *, error_key: str | None = None, status_code: int = 200
) -> Response:
    portal = portal_of(request)
    return render(
        request,
        "login.html",
        status_code=status_code,
        options=portal.idp.options(),
        next=safe_next(request.query_params.get("next"), ""),
        error_key=error_key,
    )


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return await home(request)
    return _login_page(request)


def _error_key(exc: Exception) -> str:
    for klass, key in LOGIN_ERRORS:
        if isinstance(exc, klass):
            return key
    raise exc


async def login_start(request: Request) -> Response:
    """Send the browser to the chosen identity provider."""
    portal = portal_of(request)
    issuer = request.query_params.get("issuer", "")[:MAX_PARAM]
    next_path = safe_next(request.query_params.get("next"), "")
    try:
        pending: LoginRequest = await call(
            portal.idp.begin, issuer, callback_url(request), language=language(request)
        )
    except errors.CdxError as exc:
        log.info("login could not start: %s", exc.code)
        return _login_page(request, error_key=_error_key(exc), status_code=400)
    started: dict[str, Any] = dict(request.session.get(PENDING_KEY) or {})
    now = portal.now().timestamp()
    started = {
        s: v
        for s, v in started.items()
        if isinstance(v, dict) and now - float(v.get("at", 0)) < PENDING_TTL_S
    }
    while len(started) >= MAX_PENDING:
        started.pop(next(iter(started)))
    started[pending.state] = {
        "issuer": pending.issuer,
        "nonce": pending.nonce,
        "verifier": pending.code_verifier,
        "next": next_path,
        "at": now,
    }
    request.session[PENDING_KEY] = started
    return RedirectResponse(pending.url, status_code=303)


def _take_pending(request: Request, state: str) -> tuple[LoginRequest, str] | None:
    """The login this callback answers (used once), or ``None``."""
    started = request.session.get(PENDING_KEY)
    if not isinstance(started, dict) or not state:
        return None
    entry = started.pop(state, None)
    request.session[PENDING_KEY] = started
    now = portal_of(request).now().timestamp()
    if not isinstance(entry, dict) or now - float(entry.get("at", 0)) >= PENDING_TTL_S:
        return None
    pending = LoginRequest(
        "", str(entry["issuer"]), state, str(entry["nonce"]), str(entry["verifier"])
    )
    return pending, str(entry.get("next", ""))


async def login_callback(request: Request) -> Response:
    """The identity provider sends the browser back here with a code (or an error)."""
    params = request.query_params
    state = params.get("state", "")[:MAX_PARAM]
    taken = _take_pending(request, state)
    if taken is None:  # no login started here, used twice, too old, or a forged state
        return _login_page(request, error_key="login.error.state", status_code=400)
    pending, next_path = taken
    if params.get("error"):
        log.info("the identity provider answered an error")
        return _login_page(request, error_key="login.error.denied", status_code=400)
    code = params.get("code", "")
    if not code or len(code) > MAX_PARAM:
        return _login_page(request, error_key="login.error.refused", status_code=400)
    portal = portal_of(request)
    try:
        login = await call(
            portal.idp.complete,
            pending,
            code=code,
            returned_issuer=params.get("iss"),
            redirect_uri=callback_url(request),
            now=portal.now(),
        )
    except errors.CdxError as exc:
        log.info("login refused: %s", exc.code)  # the code only: never a token or an id
        return _login_page(request, error_key=_error_key(exc), status_code=400)
    new_session(request, user=session_user(login))
    log.info("login (%s)", login.principal.role)  # never the id
    area = AREA[login.principal.role]
    return redirect(next_path if next_path.startswith(area) else HOME[login.principal.role])


async def logout(request: Request) -> Response:
    await checked_form(request)
    portal = portal_of(request)
    user = request.session.get("user")
    new_session(request)  # the old session (and every copy of its cookie) ends here
    flash(request, "flash.logged_out")
    if isinstance(user, dict) and user.get("issuer") and user.get("id_token"):
        target = await call(
            portal.idp.logout_url,
            str(user["issuer"]),
            str(user["id_token"]),
            _base_url(request) + LOGGED_OUT_PATH,
        )
        if target:
            return redirect(target)  # the page's form-action names the provider (web.render)
    return redirect("/login")


async def logged_out(request: Request) -> Response:
    """Where the identity provider sends the browser after its own logout."""
    return redirect("/login")


async def switch_language(request: Request) -> Response:
    form = await checked_form(request)
    lang = str(form.get("lang", ""))
    if lang in LANGUAGES:
        request.session["lang"] = lang
    return redirect(safe_next(str(form.get("next", "")), "/"))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login/start", login_start, methods=["GET"]),
    Route(CALLBACK_PATH, login_callback, methods=["GET"]),
    Route("/logout", logout, methods=["POST"]),
    Route(LOGGED_OUT_PATH, logged_out, methods=["GET"]),
    Route("/lang", switch_language, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
]
