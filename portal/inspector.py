"""The inspector console: search the log (by citizen only with a stated reason), view a record
with its inclusion proof checked against the cosigned checkpoint, log health, denials and
one-sided records, and unsealing a sealed entry.

Searches are posted forms, so a citizen's national id never appears in a URL; the audit service
records every inspector search in the log itself.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdx import errors
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.ids import CitizenId
from portal.backends import InclusionProof, SearchQuery, SearchResult, SignedCheckpoint
from portal.security import checked_form
from portal.tileproofs import inclusion_from_tiles
from portal.verify import (
    Access,
    CheckedCheckpoint,
    CheckedRecord,
    Status,
    check_checkpoint,
    check_record,
    parse_leaf,
    unproven_by_tiles,
)
from portal.web import RecordPendingError, call, flash, portal_of, redirect, render, require

log = logging.getLogger("portal")
RECORD_ID = re.compile(r"[A-Za-z0-9\-]{8,64}")
AGENCY = re.compile(r"[A-Za-z0-9'()+,\-.=?:]{0,200}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MIN_REASON, MAX_REASON = 10, 500


def _record_id(request: Request) -> str:
    value = str(request.path_params["record_id"])
    if not RECORD_ID.fullmatch(value):
        raise errors.NotFoundError()
    return value


def _zone(request: Request) -> ZoneInfo | None:
    return portal_of(request).catalogue.zone


def _day_ms(text: str, zone: ZoneInfo | None, *, end: bool) -> int:
    day = datetime.strptime(text, "%Y-%m-%d").date()
    moment = datetime.combine(day, time.min, tzinfo=zone or ZoneInfo("UTC"))
    if end:
        moment += timedelta(days=1)
    return to_ms(moment) - (1 if end else 0)


def parse_search(
    form: FormData, conf: VerifiedGlobalConf, zone: ZoneInfo | None, limit: int
) -> tuple[SearchQuery, dict[str, str]]:
    """Validate the search form; returns the query and field errors (catalogue keys)."""
    problems: dict[str, str] = {}
    text = {
        k: str(form.get(k, "")).strip()
        for k in (
            "client",
            "service",
            "purpose",
            "decision",
            "from",
            "until",
            "subject",
            "reason",
            "recorder",
        )
    }
    if not AGENCY.fullmatch(text["client"]):
        problems["client"] = "search.error.agency"
    if text["service"] and text["service"] not in conf.services:
        problems["service"] = "search.error.unknown"
    if text["purpose"] and text["purpose"] not in conf.purposes:
        problems["purpose"] = "search.error.unknown"
    if text["recorder"] and text["recorder"] not in conf.servers:
        problems["recorder"] = "search.error.unknown"
    decision = text["decision"] if text["decision"] in ("ALLOW", "DENY") else ""
    bounds = {}
    for name in ("from", "until"):
        if text[name]:
            try:
                if not DATE.fullmatch(text[name]):
                    raise ValueError(name)
                bounds[name] = _day_ms(text[name], zone, end=name == "until")
            except ValueError:
                problems[name] = "search.error.date"
    if bounds.get("from") and bounds.get("until") and bounds["from"] > bounds["until"]:
        problems["until"] = "search.error.range"
    if text["subject"]:
        try:
            CitizenId.parse(text["subject"], conf.instance)
        except errors.InvalidCitizenIdError:
            problems["subject"] = "search.error.citizen_id"
        if len(text["reason"]) < MIN_REASON:
            problems["reason"] = "search.error.reason"
    if len(text["reason"]) > MAX_REASON:
        problems["reason"] = "search.error.reason_long"
    query = SearchQuery(
        client=text["client"],
        service=text["service"],
        purpose=text["purpose"],
        decision=decision,  # type: ignore[arg-type]
        from_ms=bounds.get("from", 0),
        until_ms=bounds.get("until", 0),
        subject=text["subject"],
        reason=text["reason"] if text["subject"] else "",
        one_sided_only=form.get("one_sided") == "on",
        recorder=text["recorder"],
        limit=limit,
    )
    return query, problems


def hit_rows(result: SearchResult) -> list[tuple[Access, bool, int]]:
    """Search hits as (record, sealed, log index), newest first; unreadable leaves are skipped."""
    rows = []
    for hit in result.hits:
        try:
            rows.append((parse_leaf(hit.entry.leaf_data)[0], hit.sealed, hit.entry.index))
        except errors.MalformedError:
            continue
    rows.sort(key=lambda row: row[0].time, reverse=True)
    return rows


async def search_page(request: Request) -> Response:
    require(request, "inspector")
    return render(request, "inspect_search.html", values={}, problems={}, result=None)


async def search(request: Request) -> Response:
    _, token = require(request, "inspector")
    form = await checked_form(request)
    portal = portal_of(request)
    query, problems = parse_search(form, portal.conf(), _zone(request), portal.config.search_limit)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    if problems:
        return render(
            request,
            "inspect_search.html",
            status_code=400,
            values=values,
            problems=problems,
            result=None,
        )
    result = await call(portal.audit.search, token, query)
    return render(
        request,
        "inspect_search.html",
        values=values,
        problems={},
        result=result,
        rows=hit_rows(result),
        by_citizen=bool(query.subject),
    )


async def _proof_for(
    request: Request, record_id: str, quorum: int
) -> tuple[SignedCheckpoint, InclusionProof]:
    """A checkpoint that holds the record and the record's inclusion proof in it: the newest
    checkpoint with a quorum of cosignatures if it holds the record, else the newest one.

    Raises:
        NotFoundError: no such record.
        RecordPendingError: the record is not in any published checkpoint yet.
    """
    portal = portal_of(request)
    for wanted in dict.fromkeys((quorum, 0)):
        try:
            signed = await call(portal.audit.checkpoint, wanted)
        except errors.NotFoundError:
            continue
        try:
            return signed, await call(portal.audit.inclusion_proof, record_id, signed.size)
        except errors.InvalidArgumentError:
            continue  # the record came after this checkpoint
    raise RecordPendingError()


async def record(request: Request) -> Response:
    require(request, "inspector")
    record_id = _record_id(request)
    portal = portal_of(request)
    trust = portal.trust()
    signed, proof = await _proof_for(request, record_id, trust.quorum)
    checkpoint: CheckedCheckpoint | None = None
    problem = ""
    try:
        checkpoint = check_checkpoint(signed.note, trust)
    except errors.CdxError as exc:
        problem = "invalid_checkpoint"
        log.warning("audit checkpoint failed verification: %s", exc.code)
    entries = await call(portal.audit.entries, proof.index, proof.index + 1)
    entry = next((e for e in entries if e.index == proof.index), None)
    if entry is None:
        raise errors.NotFoundError()
    tiles = portal.tiles()
    tiles_problem = ""
    if tiles is not None and checkpoint is not None:  # the proof computed here from tiles
        tile_proof, tiles_problem = await call(
            inclusion_from_tiles, tiles, proof.index, checkpoint.size
        )
        proof = tile_proof or InclusionProof(proof.index, checkpoint.size, ())
    checked: CheckedRecord = check_record(
        entry, proof if not tiles_problem else None, checkpoint, trust
    )
    if checkpoint is not None:
        checked = unproven_by_tiles(checked, checkpoint.size, tiles_problem)
    if problem:  # an untrusted checkpoint proves nothing
        checked = dataclasses.replace(
            checked, status=Status.FAILED, problem=problem, included=False
        )
    elif checked.access.record_id != record_id:  # the log answered for another record
        checked = dataclasses.replace(
            checked, status=Status.FAILED, problem="record_mismatch", included=False
        )
    return render(
        request,
        "inspect_record.html",
        checked=checked,
        checkpoint=checkpoint,
        proof=proof,
        proof_source="tiles" if tiles is not None else "api",
        tiles_url=tiles.prefix if tiles is not None else "",
    )


async def unseal_confirm(request: Request) -> Response:
    require(request, "inspector")
    return render(request, "inspect_unseal.html", record_id=_record_id(request), problem=None)


async def unseal(request: Request) -> Response:
    _, token = require(request, "inspector")
    form = await checked_form(request)
    record_id = _record_id(request)
    reason = str(form.get("reason", "")).strip()
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        return render(
            request,
            "inspect_unseal.html",
            status_code=400,
            record_id=record_id,
            problem="search.error.reason",
        )
    portal = portal_of(request)
    try:
        await call(portal.audit.unseal, token, record_id, reason)
        flash(request, "flash.unsealed")
    except (errors.FailedPreconditionError, errors.AlreadyExistsError):
        flash(request, "flash.already_unsealed")  # or never sealed: nothing to do either way
    return redirect(f"/inspect/records/{record_id}")


async def health(request: Request) -> Response:
    require(request, "inspector")
    portal = portal_of(request)
    report = await call(portal.monitor.check, portal.trust(), portal.tiles())
    return render(request, "inspect_health.html", report=report)


async def denials(request: Request) -> Response:
    _, token = require(request, "inspector")
    portal = portal_of(request)
    limit = portal.config.search_limit
    denied = await call(portal.audit.search, token, SearchQuery(decision="DENY", limit=limit))
    one_sided = await call(
        portal.audit.search, token, SearchQuery(one_sided_only=True, limit=limit)
    )
    refused = await call(portal.audit.refused, token, limit)
    return render(
        request,
        "inspect_denials.html",
        denied=denied,
        one_sided=one_sided,
        denied_rows=hit_rows(denied),
        one_sided_rows=hit_rows(one_sided),
        refused=refused,
    )


routes = [
    Route("/inspect", search_page, methods=["GET"]),
    Route("/inspect/search", search, methods=["POST"]),
    Route("/inspect/records/{record_id}", record, methods=["GET"]),
    Route("/inspect/records/{record_id}/unseal", unseal_confirm, methods=["GET"]),
    Route("/inspect/records/{record_id}/unseal", unseal, methods=["POST"]),
    Route("/inspect/health", health, methods=["GET"]),
    Route("/inspect/denials", denials, methods=["GET"]),
]
