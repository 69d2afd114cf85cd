"""The citizen's pages: my data use (every access, checked against the cosigned log), my
consents (pause, resume, revoke after confirmation, approve or reject requests), the consent
receipt and the full access report.

Whose data is shown is decided by the services from the user's token; the portal adds a second
check of its own (the opening of each record must match the logged-in citizen), and answers
404 for anything that is not the user's, exactly as for something that does not exist.
"""

from __future__ import annotations

import re
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdx import errors
from portal.backends import Consent, ConsentAction, Principal
from portal.display import Names
from portal.reports import (
    CheckedHistory,
    access_report,
    check_history,
    find_row,
    receipt_download,
    report_json,
    verify_jws,
)
from portal.security import checked_form
from portal.tileproofs import with_tile_proofs
from portal.web import call, flash, portal_of, redirect, render, require, translator

SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
CURSOR = re.compile(r"[1-9][0-9]{0,17}")
STATE_GROUPS = (
    ("PENDING", "consents.group.pending"),
    ("ACTIVE", "consents.group.active"),
    ("PAUSED", "consents.group.paused"),
    ("REVOKED", "consents.group.revoked"),
    ("EXPIRED", "consents.group.expired"),
    ("REJECTED", "consents.group.rejected"),
)
#: Actions a plain button may post; revoking goes through its confirmation page.
DIRECT_ACTIONS: dict[str, ConsentAction] = {
    "approve": "approve",
    "reject": "reject",
    "pause": "pause",
    "resume": "resume",
}


def _path_id(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not SAFE_ID.fullmatch(value):
        raise errors.NotFoundError()
    return value


async def _history(
    request: Request, principal: Principal, token: str, before: int = 0
) -> CheckedHistory:
    portal = portal_of(request)
    history = await call(portal.audit.citizen_history, token, portal.config.history_limit, before)
    tiles = portal.tiles()
    if tiles is not None:  # proofs computed here from the log's tiles
        history = await call(with_tile_proofs, history, tiles)
    return await call(check_history, history, portal.trust(), principal.subject)


def _before(request: Request) -> int:
    """The ``?before=INDEX`` cursor of an "older entries" page (0: the newest page)."""
    value = request.query_params.get("before", "")
    if not value:
        return 0
    if not CURSOR.fullmatch(value):
        raise errors.NotFoundError()
    return int(value)


async def my_access(request: Request) -> Response:
    principal, token = require(request, "citizen")
    before = _before(request)
    history = await _history(request, principal, token, before)
    return render(request, "my_access.html", history=history, before=before)


async def access_detail(request: Request) -> Response:
    principal, token = require(request, "citizen")
    record_id = _path_id(request, "record_id")
    history = await _history(request, principal, token)
    row = find_row(history, record_id)
    if row is None:
        raise errors.NotFoundError()
    return render(
        request, "access_detail.html", row=row, checkpoint=history.checkpoint, history=history
    )


async def _my_consents(request: Request, token: str) -> list[Consent]:
    portal = portal_of(request)
    return list(await call(portal.consent.list_my_consents, token))


async def _my_consent(request: Request, token: str, consent_id: str) -> Consent:
    for consent in await _my_consents(request, token):
        if consent.id == consent_id:
            return consent
    raise errors.NotFoundError()


async def my_consents(request: Request) -> Response:
    _, token = require(request, "citizen")
    consents = await _my_consents(request, token)
    consents.sort(key=lambda c: c.updated_at or c.created_at or datetime.min, reverse=True)
    groups = [
        (state, key, [c for c in consents if c.state == state]) for state, key in STATE_GROUPS
    ]
    return render(request, "my_consents.html", groups=groups, total=len(consents))


async def consent_detail(request: Request) -> Response:
    _, token = require(request, "citizen")
    portal = portal_of(request)
    consent = await _my_consent(request, token, _path_id(request, "consent_id"))
    events = await call(portal.consent.events, token, consent.id)
    artefact_ok = verify_jws(consent.artefact, portal.conf()) if consent.artefact else None
    return render(
        request, "consent_detail.html", consent=consent, events=events, artefact_ok=artefact_ok
    )


async def consent_action(request: Request) -> Response:
    _, token = require(request, "citizen")
    await checked_form(request)
    action = DIRECT_ACTIONS.get(str(request.path_params["action"]))
    if action is None:
        raise errors.NotFoundError()
    consent_id = _path_id(request, "consent_id")
    portal = portal_of(request)
    await call(portal.consent.act, token, action, consent_id)
    flash(request, f"flash.consent.{action}")
    return redirect("/me/consents")


async def revoke_confirm(request: Request) -> Response:
    _, token = require(request, "citizen")
    consent = await _my_consent(request, token, _path_id(request, "consent_id"))
    if consent.state not in ("ACTIVE", "PAUSED", "PENDING"):
        flash(request, "flash.consent.not_revocable")
        return redirect(f"/me/consents/{consent.id}")
    return render(request, "revoke_confirm.html", consent=consent)


async def revoke(request: Request) -> Response:
    _, token = require(request, "citizen")
    form = await checked_form(request)
    consent_id = _path_id(request, "consent_id")
    if form.get("confirm") != "yes":  # only the confirmation page posts here
        return redirect(f"/me/consents/{consent_id}/revoke")
    portal = portal_of(request)
    await call(portal.consent.act, token, "revoke", consent_id)
    flash(request, "flash.consent.revoke")
    return redirect("/me/consents")


async def receipt(request: Request) -> Response:
    _, token = require(request, "citizen")
    consent_id = _path_id(request, "consent_id")
    portal = portal_of(request)
    signed = await call(portal.consent.receipt, token, consent_id)
    body = receipt_download(signed, verify_jws(signed.jws, portal.conf()))
    return Response(
        body,
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="consent-receipt-{consent_id}.json"'
        },
    )


async def report_page(request: Request) -> Response:
    principal, token = require(request, "citizen")
    history = await _history(request, principal, token)
    portal = portal_of(request)
    return render(
        request, "report.html", history=history, generated_at=portal.now(), user_name=principal.name
    )


async def report_download(request: Request) -> Response:
    principal, token = require(request, "citizen")
    history = await _history(request, principal, token)
    portal = portal_of(request)
    conf = portal.conf()
    now = portal.now()
    report = access_report(history, Names(conf, translator(request)), conf, now)
    return Response(
        report_json(report),
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="access-report-{now:%Y%m%d}.json"'},
    )


routes = [
    Route("/me/access", my_access, methods=["GET"]),
    Route("/me/access/{record_id}", access_detail, methods=["GET"]),
    Route("/me/consents", my_consents, methods=["GET"]),
    Route("/me/consents/{consent_id}", consent_detail, methods=["GET"]),
    Route("/me/consents/{consent_id}/revoke", revoke_confirm, methods=["GET"]),
    Route("/me/consents/{consent_id}/revoke", revoke, methods=["POST"]),
    Route("/me/consents/{consent_id}/receipt", receipt, methods=["GET"]),
    Route("/me/consents/{consent_id}/{action}", consent_action, methods=["POST"]),
    Route("/me/report", report_page, methods=["GET"]),
    Route("/me/report.json", report_download, methods=["GET"]),
]
