"""Pages every visitor sees: home, login and logout through the identity provider, the language
switch and the health endpoint."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdx import errors
from cdx.ids import CitizenId
from portal.backends import Role
from portal.i18n import LANGUAGES
from portal.security import checked_form, new_session
from portal.web import (
    call,
    current_user,
    flash,
    portal_of,
    redirect,
    render,
    safe_next,
)

log = logging.getLogger("portal")
HOME = {"citizen": "/me/access", "inspector": "/inspect"}
AREA = {"citizen": "/me/", "inspector": "/inspect"}
MAX_ID_LENGTH = 64


async def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return redirect("/login")
    return redirect(HOME[user[0].role])


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return await home(request)
    portal = portal_of(request)
    return render(
        request,
        "login.html",
        development=portal.idp.development,
        next=safe_next(request.query_params.get("next"), ""),
        error_key=None,
        role="citizen",
    )


async def login(request: Request) -> Response:
    form = await checked_form(request)
    portal = portal_of(request)
    role_text = str(form.get("role", "citizen"))
    role: Role = "inspector" if role_text == "inspector" else "citizen"
    subject = str(form.get("subject", "")).strip()
    next_path = safe_next(str(form.get("next", "")), "")

    def refuse(key: str) -> Response:
        return render(
            request,
            "login.html",
            status_code=400,
            development=portal.idp.development,
            next=next_path,
            error_key=key,
            role=role,
        )

    if not portal.idp.development:
        return refuse("login.error.no_dev")
    if not subject or len(subject) > MAX_ID_LENGTH:
        return refuse("login.error.empty")
    if role == "citizen":
        try:
            CitizenId.parse(subject, portal.conf().instance)
        except errors.InvalidCitizenIdError:
            return refuse("login.error.citizen_id")
    try:
        token = await call(portal.idp.dev_login, subject, role, portal.now())
        principal = portal.idp.verify(token, portal.now())
    except errors.InvalidArgumentError:
        return refuse("login.error.citizen_id")
    except (errors.PermissionDeniedError, errors.FailedPreconditionError):
        return refuse("login.error.no_dev")
    new_session(request, token=token)
    log.info("login (%s)", principal.role)  # never the id
    area = AREA[principal.role]
    return redirect(next_path if next_path.startswith(area) else HOME[principal.role])


async def logout(request: Request) -> Response:
    await checked_form(request)
    new_session(request)
    flash(request, "flash.logged_out")
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
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/lang", switch_language, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
]
