"""Data-subject requests in the portal (ADR 0020): a citizen files an objection, restriction,
erasure or rectification request to an agency, or a complaint to the inspectors, follows every
step and its deadlines, withdraws; asks for their data and downloads the signed access bundle.
The inspector console lists every overdue request and works the complaints.

Whose requests are shown is decided by the consent service from the user's token; anything not
the user's is a 404, like something that does not exist. An access request is completed here:
the portal fetches the citizen's history from the audit log (only the portal may relay their
token there) and hands it to the consent service, which checks every proof before it signs.
The keys a bundle is verified with are served at ``/.well-known/cdx/`` as the log serves them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdx import errors, keydocs
from cdx.globalconf import VerifiedGlobalConf
from portal.requests_backend import (
    FORM_KINDS,
    HANDLER_ACTIONS,
    AccessEvidence,
    EvidenceEntry,
    HandlerAction,
    RequestsBackend,
    SubjectRequest,
)
from portal.security import checked_form
from portal.web import (
    RecordPendingError,
    call,
    flash,
    portal_of,
    redirect,
    render,
    require,
    translator,
)

REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_TEXT = 4000
#: A bundle proves at most this many entries (``audit.bundles.MAX_BUNDLE_ENTRIES``).
MAX_EVIDENCE = 1000
#: Kinds addressed to an agency; objection and restriction also name the purpose.
TO_AGENCY = frozenset({"objection", "restriction", "erasure", "rectification"})
NEEDS_PURPOSE = frozenset({"objection", "restriction"})
NEEDS_DETAILS = frozenset({"complaint", "rectification"})


def _backend(request: Request) -> RequestsBackend:
    backend = portal_of(request).requests
    if backend is None:
        raise errors.UnavailableError("data-subject requests are not available here")
    return backend


def _request_id(request: Request) -> str:
    value = str(request.path_params["request_id"])
    if not REQUEST_ID.fullmatch(value):
        raise errors.NotFoundError()
    return value


def subsystems(conf: VerifiedGlobalConf) -> list[str]:
    """Every registered subsystem: the agencies a request may be addressed to."""
    return sorted(f"{mid}:{code}" for mid, m in conf.members.items() for code in m.subsystems)


def _last_day(request: Request) -> Any:
    """``by(deadline)``: the day a deadline closes (deadlines end at the following midnight)."""
    t = translator(request)
    return lambda moment: t.day(moment - timedelta(microseconds=1)) if moment else "—"


def _page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    portal = portal_of(request)
    return render(
        request,
        template,
        status_code=status_code,
        by=_last_day(request),
        now=portal.now(),
        **context,
    )


# --- the citizen ---------------------------------------------------------------------------------


def parse_filing(form: FormData, conf: VerifiedGlobalConf) -> tuple[dict[str, str], dict[str, str]]:
    """Validate the request form; returns the values to file and field problems (keys)."""
    text = {
        k: str(form.get(k, "")).strip()
        for k in ("kind", "addressee", "purpose", "service", "details")
    }
    problems: dict[str, str] = {}
    kind = text["kind"]
    if kind not in FORM_KINDS:
        problems["kind"] = "requests.error.kind"
    if kind in TO_AGENCY:
        if text["addressee"] not in subsystems(conf):
            problems["addressee"] = "requests.error.addressee"
    else:
        text["addressee"] = ""  # a complaint goes to the inspectors
    if text["purpose"] and text["purpose"] not in conf.purposes:
        problems["purpose"] = "requests.error.purpose"
    elif kind in NEEDS_PURPOSE and not text["purpose"]:
        problems["purpose"] = "requests.error.purpose_needed"
    if text["service"] and text["service"] not in conf.services:
        problems["service"] = "requests.error.service"
    if len(text["details"]) > MAX_TEXT:
        problems["details"] = "requests.error.too_long"
    elif kind in NEEDS_DETAILS and not text["details"]:
        problems["details"] = "requests.error.details_needed"
    return text, problems


async def my_requests(request: Request) -> Response:
    _, token = require(request, "citizen")
    mine = await call(_backend(request).list_mine, token)
    return _form_page(request, list(mine), {}, {})


def _form_page(
    request: Request,
    mine: list[SubjectRequest],
    values: dict[str, str],
    problems: dict[str, str],
    *,
    status_code: int = 200,
) -> Response:
    conf = portal_of(request).conf()
    return _page(
        request,
        "my_requests.html",
        status_code=status_code,
        requests=mine,
        values=values,
        problems=problems,
        kinds=FORM_KINDS,
        agencies=subsystems(conf),
    )


async def file_request(request: Request) -> Response:
    _, token = require(request, "citizen")
    form = await checked_form(request)
    backend = _backend(request)
    values, problems = parse_filing(form, portal_of(request).conf())
    if problems:
        mine = await call(backend.list_mine, token)
        return _form_page(request, list(mine), values, problems, status_code=400)
    filed = await call(
        backend.file,
        token,
        values["kind"],  # type: ignore[arg-type]
        addressee=values["addressee"],
        purpose=values["purpose"],
        service=values["service"],
        details=values["details"],
    )
    flash(request, "flash.request.filed")
    return redirect(f"/me/requests/{filed.id}")


async def _evidence(request: Request, token: str) -> AccessEvidence:
    """The citizen's history as the log proves it: one cosigned checkpoint, every entry it
    covers with its proof in that checkpoint (fetched again where a later page came with a
    newer checkpoint), and how many were left out.

    Raises:
        RecordPendingError: the log has published no checkpoint yet.
    """
    portal = portal_of(request)
    items: list[Any] = []
    checkpoint = None
    before = 0
    while len(items) < MAX_EVIDENCE:
        page = await call(
            portal.audit.citizen_history, token, min(500, MAX_EVIDENCE - len(items)), before
        )
        checkpoint = checkpoint or page.checkpoint
        items.extend(page.items)
        before = page.next_before_index
        if not before:
            break
    if checkpoint is None:
        raise RecordPendingError()
    entries: list[EvidenceEntry] = []
    omitted = 0
    for item in items:
        opening = item.opening
        if opening is None or item.entry.index >= checkpoint.size:
            omitted += 1  # shredded, or newer than the checkpoint: nothing to prove yet
            continue
        proof = item.proof
        if proof is None or proof.tree_size != checkpoint.size:
            proof = await call(portal.audit.inclusion_proof, opening.record_id, checkpoint.size)
        entries.append(
            EvidenceEntry(
                item.entry.index,
                item.entry.leaf_data,
                tuple(proof.hashes),
                opening.subject_salt,
                opening.request_salt,
            )
        )
    return AccessEvidence(checkpoint.note, tuple(entries), omitted)


async def _complete(request: Request, token: str, request_id: str) -> Response:
    """Complete an access request with the citizen's proven history; when the log cannot prove
    it yet (no cosigned checkpoint, or the log is down) the request waits, and its page offers
    to prepare it again."""
    try:
        evidence = await _evidence(request, token)
        await call(_backend(request).complete_access, token, request_id, evidence)
    except (RecordPendingError, errors.UnavailableError, errors.DeadlineExceededError):
        flash(request, "flash.request.bundle_waiting")
    else:
        flash(request, "flash.request.bundle_ready")
    return redirect(f"/me/requests/{request_id}")


async def request_access(request: Request) -> Response:
    _, token = require(request, "citizen")
    await checked_form(request)
    filed = await call(_backend(request).file, token, "access")
    return await _complete(request, token, filed.id)


async def prepare_bundle(request: Request) -> Response:
    """Complete an access request that is still waiting (the log was down, say)."""
    _, token = require(request, "citizen")
    await checked_form(request)
    return await _complete(request, token, _request_id(request))


async def request_detail(request: Request) -> Response:
    _, token = require(request, "citizen")
    found = await call(_backend(request).get_mine, token, _request_id(request))
    conf = portal_of(request).conf()
    return _page(
        request,
        "request_detail.html",
        r=found,
        quorum=conf.witness_quorum,
        origin=conf.audit_log_origin,
    )


async def withdraw(request: Request) -> Response:
    _, token = require(request, "citizen")
    await checked_form(request)
    request_id = _request_id(request)
    await call(_backend(request).withdraw, token, request_id)
    flash(request, "flash.request.withdrawn")
    return redirect(f"/me/requests/{request_id}")


async def bundle_download(request: Request) -> Response:
    _, token = require(request, "citizen")
    request_id = _request_id(request)
    body = await call(_backend(request).access_bundle, token, request_id)
    return Response(
        body,
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="access-bundle-{request_id}.json"'},
    )


async def key_document(request: Request) -> Response:
    """The log's verifier key, the witnesses' keys and the JWK set (consent service key), as
    the log publishes them: what ``cdx audit bundle verify`` takes."""
    path = f".well-known/cdx/{request.path_params['name']}"
    found = keydocs.documents(portal_of(request).conf()).get(path)
    if found is None:
        raise errors.NotFoundError()
    body, content_type = found
    return Response(body, media_type=content_type.split(";")[0])


# --- the inspector -------------------------------------------------------------------------------


async def inspect_requests(request: Request) -> Response:
    _, token = require(request, "inspector")
    backend = _backend(request)
    overdue = await call(backend.overdue, token)
    complaints = await call(backend.complaints, token)
    return _page(
        request,
        "inspect_requests.html",
        overdue=list(overdue),
        complaints=list(complaints),
        overdue_days=overdue_days,
    )


async def inspect_complaint(request: Request) -> Response:
    _, token = require(request, "inspector")
    found = await call(_backend(request).complaint, token, _request_id(request))
    return _page(request, "inspect_request.html", r=found, problem=None)


async def act_on_complaint(request: Request) -> Response:
    _, token = require(request, "inspector")
    form = await checked_form(request)
    request_id = _request_id(request)
    action = str(request.path_params["action"])
    if action not in HANDLER_ACTIONS:
        raise errors.NotFoundError()
    text = str(form.get("text", "")).strip()
    backend = _backend(request)
    needs_text = action in ("extend", "complete", "refuse")
    if (needs_text and not text) or len(text) > MAX_TEXT:
        found = await call(backend.complaint, token, request_id)
        return _page(
            request,
            "inspect_request.html",
            status_code=400,
            r=found,
            problem="requests.error.text_needed" if not text else "requests.error.too_long",
        )
    step: HandlerAction = action
    await call(backend.act_on_complaint, token, request_id, step, text)
    flash(request, f"flash.request.{action}")
    return redirect(f"/inspect/requests/{request_id}")


def overdue_days(r: SubjectRequest, now: datetime) -> int:
    """Whole days a request is past the deadline it missed."""
    missed = r.complete_by if r.overdue == "completion" else r.acknowledge_by
    return max(0, (now - missed).days)


routes = [
    Route("/me/requests", my_requests, methods=["GET"]),
    Route("/me/requests", file_request, methods=["POST"]),
    Route("/me/requests/access", request_access, methods=["POST"]),
    Route("/me/requests/{request_id}", request_detail, methods=["GET"]),
    Route("/me/requests/{request_id}/withdraw", withdraw, methods=["POST"]),
    Route("/me/requests/{request_id}/bundle", prepare_bundle, methods=["POST"]),
    Route("/me/requests/{request_id}/bundle.json", bundle_download, methods=["GET"]),
    Route("/inspect/requests", inspect_requests, methods=["GET"]),
    Route("/inspect/requests/{request_id}", inspect_complaint, methods=["GET"]),
    Route("/inspect/requests/{request_id}/{action}", act_on_complaint, methods=["POST"]),
    Route("/.well-known/cdx/{name}", key_document, methods=["GET"]),
]
