"""The citizen's pages: my data use (every access, checked against the cosigned log), my
consents (pause, resume, revoke after confirmation, approve or reject requests), the consent
receipt and the full access report; and "acting for": a legal representative (a parent, a
guardian, an authorised person) chooses a person they represent, and the same pages then show
and change that person's data use and consents.

Whose data is shown is decided by the services from the user's token (and, when acting for
someone, from the relation the consent service holds: the services check it on every call, the
portal's choice alone never suffices); the portal adds a second check of its own (the opening
of each record must match the person whose data the pages show), and answers 404 for anything
that is not theirs, exactly as for something that does not exist.
"""

from __future__ import annotations

import re
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdx import errors
from portal.backends import Consent, ConsentAction, Principal, Relation
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
from portal.web import act_for, call, flash, portal_of, redirect, render, require, translator

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
    history = await call(
        portal.audit.citizen_history,
        token,
        portal.config.history_limit,
        before,
        _acting(principal),
    )
    tiles = portal.tiles()
    if tiles is not None:  # proofs computed here from the log's tiles
        history = await call(with_tile_proofs, history, tiles)
    return await call(check_history, history, portal.trust(), principal.data_subject)


def _acting(principal: Principal) -> str:
    """The national id of the person the user acts for (``""``: their own data)."""
    return principal.acting_for or ""


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


async def _my_consents(request: Request, principal: Principal, token: str) -> list[Consent]:
    portal = portal_of(request)
    return list(await call(portal.consent.list_my_consents, token, _acting(principal)))


async def _my_consent(
    request: Request, principal: Principal, token: str, consent_id: str
) -> Consent:
    for consent in await _my_consents(request, principal, token):
        if consent.id == consent_id:
            return consent
    raise errors.NotFoundError()


async def my_consents(request: Request) -> Response:
    principal, token = require(request, "citizen")
    consents = await _my_consents(request, principal, token)
    consents.sort(key=lambda c: c.updated_at or c.created_at or datetime.min, reverse=True)
    groups = [
        (state, key, [c for c in consents if c.state == state]) for state, key in STATE_GROUPS
    ]
    return render(request, "my_consents.html", groups=groups, total=len(consents))


async def consent_detail(request: Request) -> Response:
    principal, token = require(request, "citizen")
    portal = portal_of(request)
    consent = await _my_consent(request, principal, token, _path_id(request, "consent_id"))
    events = await call(portal.consent.events, token, consent.id, _acting(principal))
    artefact_ok = verify_jws(consent.artefact, portal.conf()) if consent.artefact else None
    return render(
        request, "consent_detail.html", consent=consent, events=events, artefact_ok=artefact_ok
    )


async def consent_action(request: Request) -> Response:
    principal, token = require(request, "citizen")
    await checked_form(request)
    action = DIRECT_ACTIONS.get(str(request.path_params["action"]))
    if action is None:
        raise errors.NotFoundError()
    consent_id = _path_id(request, "consent_id")
    portal = portal_of(request)
    await call(portal.consent.act, token, action, consent_id, _acting(principal))
    flash(request, f"flash.consent.{action}")
    return redirect("/me/consents")


async def revoke_confirm(request: Request) -> Response:
    principal, token = require(request, "citizen")
    consent = await _my_consent(request, principal, token, _path_id(request, "consent_id"))
    if consent.state not in ("ACTIVE", "PAUSED", "PENDING"):
        flash(request, "flash.consent.not_revocable")
        return redirect(f"/me/consents/{consent.id}")
    return render(request, "revoke_confirm.html", consent=consent)


async def revoke(request: Request) -> Response:
    principal, token = require(request, "citizen")
    form = await checked_form(request)
    consent_id = _path_id(request, "consent_id")
    if form.get("confirm") != "yes":  # only the confirmation page posts here
        return redirect(f"/me/consents/{consent_id}/revoke")
    portal = portal_of(request)
    await call(portal.consent.act, token, "revoke", consent_id, _acting(principal))
    flash(request, "flash.consent.revoke")
    return redirect("/me/consents")


async def receipt(request: Request) -> Response:
    principal, token = require(request, "citizen")
    consent_id = _path_id(request, "consent_id")
    portal = portal_of(request)
    signed = await call(portal.consent.receipt, token, consent_id, _acting(principal))
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
    name = principal.acting_name if principal.acting_for else principal.name
    return render(
        request, "report.html", history=history, generated_at=portal.now(), user_name=name
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


# --- acting for someone ------------------------------------------------------------------------


async def _relations(request: Request, token: str) -> tuple[list[Relation], list[Relation]]:
    portal = portal_of(request)
    represented = list(await call(portal.consent.represented, token))
    representatives = list(await call(portal.consent.representatives, token))
    return represented, representatives


async def acting_page(request: Request) -> Response:
    """Whom the user may act for (and who may act for them), and the choice."""
    principal, token = require(request, "citizen")
    represented, representatives = await _relations(request, token)
    return render(
        request,
        "acting_for.html",
        represented=represented,
        representatives=representatives,
        acting=principal.acting_for is not None,
    )


async def choose_acting(request: Request) -> Response:
    """Act for the person of one of the user's relations (by relation id: no national id in
    the page or the form), or for themself again (empty)."""
    _, token = require(request, "citizen")
    form = await checked_form(request)
    chosen = str(form.get("relation", ""))
    if not chosen:
        act_for(request, None)
        flash(request, "flash.acting.self")
        return redirect("/me/access")
    portal = portal_of(request)
    for relation in await call(portal.consent.represented, token):
        if relation.id == chosen and relation.in_force:
            act_for(request, relation.person, relation.name, relation.kind)
            flash(request, "flash.acting.started")
            return redirect("/me/access")
    raise errors.NotFoundError()


routes = [
    Route("/me/acting-for", acting_page, methods=["GET"]),
    Route("/me/acting-for", choose_acting, methods=["POST"]),
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
