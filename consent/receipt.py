"""Signed consent receipts: an ISO/IEC TS 27560 consent record as JSON, signed as a compact JWS.

The record follows the information elements of ISO/IEC TS 27560:2023 (consent record
information structure): record header (schema version, record id, PII principal, timestamps,
jurisdiction), the PII controller (the grantee agency), the processing (purpose, lawful basis,
PII categories = the consented fields, storage = retention at the recipient, usage limits),
the consent state in the standard's vocabulary, and the event history. The consent artefact
travels inside it, so the receipt proves both what was agreed and its state at ``issued_at``.

The JWS (``typ`` ``cdx-consent-receipt+jwt``) is signed with the consent service's key: any
JOSE library verifies it with ``anchors.consent_service_key`` from global configuration.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cdx import crypto
from cdx.consentpolicy import ConsentState
from cdx.globalconf import VerifiedGlobalConf
from consent.artefact import RECEIPT_TYPE, sign_jws
from consent.model import ConsentEvent, ConsentRecord, canonical_json, iso

SCHEMA_VERSION = "ISO/IEC TS 27560:2023"

#: CDX states in the consent-state vocabulary of TS 27560 / W3C DPV.
STATE_27560 = {
    ConsentState.PENDING: "requested",
    ConsentState.ACTIVE: "given",
    ConsentState.PAUSED: "given (suspended by the PII principal)",
    ConsentState.REVOKED: "withdrawn",
    ConsentState.EXPIRED: "expired",
    ConsentState.REJECTED: "refused",
}


def _actor(actor: str) -> str:
    if actor == "citizen":
        return "pii_principal"
    if actor == "system":
        return "consent_service"
    return actor  # a subsystem id: the agency that requested or used the consent


def build_receipt(
    record: ConsentRecord,
    events: Sequence[ConsentEvent],
    conf: VerifiedGlobalConf,
    *,
    now: datetime,
    issuer: str,
) -> dict[str, Any]:
    """The TS 27560 consent record for ``record`` (contains the subject: give it only to them)."""
    terms = record.terms
    member = terms.grantee.rsplit(":", 1)[0]
    member_info = conf.members.get(member)
    purpose_info = conf.purposes.get(terms.purpose)
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": record.id,
        "receipt_id": str(uuid.uuid4()),
        "issued_at": iso(now),
        "issuer": issuer,
        "jurisdiction": conf.instance,
        "pii_principal_id": terms.subject.value,
        "consent_type": "explicit",
        "collection_method": "citizen approval of an agency request"
        if record.requested_by
        else "direct grant by the citizen",
        "consent_state": STATE_27560[record.state],
        "cdx_state": record.state.value,
        "pii_controllers": [
            {
                "controller_id": terms.grantee,
                "controller_member": member,
                "controller_name": member_info.name if member_info else "",
            }
        ],
        "purposes": [
            {
                "purpose_id": terms.purpose,
                "purpose": purpose_info.description if purpose_info else terms.purpose,
                "lawful_basis": "consent",
                "pii_categories": sorted(terms.fields),
                "services": list(terms.services),
                "data_period": {
                    "from": terms.data_from.isoformat() if terms.data_from else None,
                    "until": terms.data_until.isoformat() if terms.data_until else None,
                },
                "storage": {"retention_days_at_recipient": terms.retention_days},
                "usage_limit": terms.max_uses or None,
                "uses": record.uses,
            }
        ],
        "validity": {"from": iso(terms.valid_from), "until": iso(terms.valid_until)},
        "supersedes": record.supersedes or None,
        "events": [
            {
                "event_time": iso(e.at),
                "event_type": e.action,
                "event_by": _actor(e.actor),
                "event_state": STATE_27560[e.state],
            }
            for e in events
        ],
        "consent_artefact": record.artefact or None,
    }


def sign_receipt(signer: crypto.Signer, receipt: dict[str, Any]) -> tuple[str, str]:
    """Returns ``(json, jws)``: the canonical JSON and its compact JWS."""
    text = canonical_json(receipt)
    return text, sign_jws(signer, text.encode(), RECEIPT_TYPE)
