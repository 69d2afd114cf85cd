"""A citizen's access history, checked and grouped for display, and the downloadable report.

One exchange is usually recorded twice (consumer side and provider side, same message id); the
citizen sees one row per exchange, verified only when every record of it verified. The JSON
report carries the evidence (leaf bytes, proofs, the cosigned checkpoint) so anyone can check it
again without trusting the portal; it carries no national id.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidTokenError

from cdx import crypto, errors
from cdx.globalconf import VerifiedGlobalConf
from portal.backends import CitizenHistory, ConsentReceipt
from portal.display import Names
from portal.verify import (
    CheckedCheckpoint,
    CheckedRecord,
    LogTrust,
    Status,
    check_checkpoint,
    unproven_by_tiles,
)
from portal.verify import check_record as _check_record

log = logging.getLogger(__name__)
REPORT_FORMAT = "cdx-access-report/v1"
_RANK = {Status.VERIFIED: 0, Status.PENDING: 1, Status.FAILED: 2}


@dataclass(frozen=True)
class AccessRow:
    """One exchange (or one inspector action) as the citizen sees it."""

    key: str
    primary: CheckedRecord
    records: tuple[CheckedRecord, ...]

    @property
    def status(self) -> Status:
        return max((r.status for r in self.records), key=_RANK.__getitem__)

    @property
    def problem(self) -> str:
        for r in self.records:
            if r.status == self.status and r.problem:
                return r.problem
        return ""

    @property
    def one_sided(self) -> bool:
        return (
            self.primary.access.kind == "access" and len({r.access.role for r in self.records}) < 2
        )


@dataclass(frozen=True)
class CheckedHistory:
    rows: tuple[AccessRow, ...]
    checkpoint: CheckedCheckpoint | None
    checkpoint_problem: str
    unreadable: int
    next_before_index: int = 0  # the "older entries" cursor; 0 = none
    proof_source: str = "api"  # "tiles": proofs computed here from the log's tiles
    tiles_url: str = ""


def check_history(history: CitizenHistory, trust: LogTrust, subject: str) -> CheckedHistory:
    """Check every entry of a citizen's history against its checkpoint and group by exchange."""
    checkpoint: CheckedCheckpoint | None = None
    problem = ""
    if history.checkpoint is not None:
        try:
            checkpoint = check_checkpoint(history.checkpoint.note, trust)
        except errors.CdxError as exc:
            problem = exc.code
            log.warning("citizen history checkpoint failed verification: %s", exc.code)
    checked: list[CheckedRecord] = []
    unreadable = 0
    for item in history.items:
        try:
            checked.append(
                _check_record(
                    item.entry, item.proof, checkpoint, trust, opening=item.opening, subject=subject
                )
            )
        except errors.MalformedError:
            unreadable += 1
    if problem:  # no trusted checkpoint: nothing may show as verified or pending
        checked = [
            dataclasses.replace(
                r, status=Status.FAILED, problem="invalid_checkpoint", included=False
            )
            for r in checked
        ]
    elif history.tiles_problem and checkpoint is not None:
        checked = [unproven_by_tiles(r, checkpoint.size, history.tiles_problem) for r in checked]
    return CheckedHistory(
        tuple(group(checked)),
        checkpoint,
        problem,
        unreadable,
        history.next_before_index,
        history.proof_source,
        history.tiles_url,
    )


def group(records: list[CheckedRecord]) -> list[AccessRow]:
    """Group records by exchange (message id), newest first; the provider's record leads."""
    groups: dict[str, list[CheckedRecord]] = {}
    for r in records:
        key = (
            r.access.message_id
            if r.access.kind == "access" and r.access.message_id
            else (r.access.record_id)
        )
        groups.setdefault(key, []).append(r)
    rows = []
    for key, members in groups.items():
        members.sort(key=lambda r: (r.access.role != "PROVIDER", r.access.time))
        rows.append(AccessRow(key, members[0], tuple(members)))
    rows.sort(key=lambda row: min(r.access.time for r in row.records), reverse=True)
    return rows


def find_row(history: CheckedHistory, record_id: str) -> AccessRow | None:
    for row in history.rows:
        if any(r.access.record_id == record_id for r in row.records):
            return row
    return None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def access_report(
    history: CheckedHistory, names: Names, conf: VerifiedGlobalConf, now: datetime
) -> dict[str, Any]:
    """The full access report as a JSON-ready object (no national id, evidence included)."""
    cp = history.checkpoint
    return {
        "format": REPORT_FORMAT,
        "generated_at": _iso(now),
        "instance": conf.instance,
        "log": {
            "origin": conf.audit_log_origin,
            "log_key": conf.audit_log_key,
            "checkpoint_note": cp.note if cp else None,
            "checkpoint_problem": history.checkpoint_problem or None,
            "tree_size": cp.size if cp else None,
            "root_hash": cp.root_hash.hex() if cp else None,
            "cosigned_by": list(cp.witnesses) if cp else [],
            "witness_quorum": conf.witness_quorum,
            "proof_source": history.proof_source,
            "tiles_url": history.tiles_url or None,
        },
        "accesses": [_row_json(row, names) for row in history.rows],
        "unreadable_entries": history.unreadable,
    }


def _row_json(row: AccessRow, names: Names) -> dict[str, Any]:
    a = row.primary.access
    return {
        "time": _iso(min(r.access.time for r in row.records)),
        "kind": a.kind,
        "client": a.client,
        "agency": names.agency(a.client) if a.client else None,
        "service": a.service,
        "service_description": names.service(a.service) if a.service else None,
        "purpose": a.purpose,
        "purpose_description": names.purpose(a.purpose) if a.purpose else None,
        "lawful_basis": a.lawful_basis,
        "legal_reference": a.legal_reference or None,
        "consent_id": a.consent_id or None,
        "decision": a.decision,
        "reason_code": a.reason_code,
        "actor": a.actor or None,
        "fields": list(a.released_fields),
        "status": str(row.status),
        "problem": row.problem or None,
        "records": [
            {
                "record_id": r.access.record_id,
                "message_id": r.access.message_id,
                "recorder": r.access.recorder,
                "role": r.access.role,
                "index": r.index,
                "leaf_hash": r.leaf_hash.hex(),
                "leaf": leaf_base64(r.leaf_data),
                "inclusion_proof": [h.hex() for h in r.proof_hashes],
                "tree_size": r.checkpoint_size,
                "status": str(r.status),
                "problem": r.problem or None,
            }
            for r in row.records
        ],
    }


def report_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8")


def leaf_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- consent service signatures ----------------------------------------------------------------


def verify_jws(token: str, conf: VerifiedGlobalConf) -> bool:
    """Whether a compact JWS (consent artefact or receipt) is signed by the consent service key
    registered in global conf. The algorithm is fixed by that key (DESIGN §5), never the token."""
    if not token or not conf.consent_service_key_der:
        return False
    try:
        key = crypto.public_key_from_der(conf.consent_service_key_der)
    except errors.CdxError:
        return False
    algorithm = "EdDSA" if "ed25519" in type(key).__name__.lower() else "ES256"
    try:
        jwt.api_jws.decode_complete(token, key=key, algorithms=[algorithm])  # type: ignore[arg-type]
    except (InvalidTokenError, ValueError, TypeError):
        return False
    return True


def receipt_download(receipt: ConsentReceipt, signature_ok: bool) -> bytes:
    """The receipt file: the consent record, its JWS, and whether the portal checked it."""
    try:
        record: Any = json.loads(receipt.json)
    except ValueError:
        record = receipt.json
    body = {"receipt": record, "jws": receipt.jws, "signature_verified_by_portal": signature_ok}
    return json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8")
