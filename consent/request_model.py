"""Data-subject requests as the consent service hands them out: the domain types, and the JSON
form a request and a consent take in a citizen's access bundle (``audit.bundles``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit import bundles
from cdx.ids import CitizenId
from consent import store
from consent.model import ConsentRecord, from_ms, iso
from consent.model import terms_to_json as consent_terms_json
from consent.requestpolicy import Deadlines, RequestKind, RequestState, overdue

__all__ = ["AccessEvidence", "RequestStep", "SubjectRequest", "consent_json", "request_json"]


@dataclass(frozen=True)
class RequestStep:
    """One step of a request; ``text`` is empty where the caller may not read it."""

    seq: int
    action: str
    state: RequestState
    at: datetime
    actor: str
    text: str
    record_id: str


@dataclass(frozen=True)
class SubjectRequest:
    """A request as stored; ``subject`` is ``None`` where the caller may not learn it."""

    id: str
    kind: RequestKind
    state: RequestState
    addressee: str
    purpose: str
    service: str
    received_at: datetime
    due: Deadlines
    extended: bool
    closed_at: datetime | None
    version: int
    has_bundle: bool
    subject: CitizenId | None = field(default=None, repr=False)
    steps: tuple[RequestStep, ...] = ()

    def overdue(self, now: datetime) -> str | None:
        """``"acknowledgement"``, ``"completion"`` or ``None`` (``requestpolicy.overdue``)."""
        return overdue(self.state, self.due, now)


@dataclass(frozen=True)
class AccessEvidence:
    """A citizen's history as the log served it (the caller relays it: the audit log answers
    only the citizen's own token, through the portal)."""

    checkpoint_note: str
    entries: tuple[bundles.EvidenceEntry, ...]
    omitted: int = 0


def request_json(request: SubjectRequest) -> dict[str, Any]:
    """A request as an access bundle lists it."""
    return {
        "id": request.id,
        "kind": request.kind.value,
        "state": request.state.value,
        "addressee": request.addressee,
        "purpose": request.purpose,
        "service": request.service,
        "received_at": iso(request.received_at),
        "acknowledge_by": iso(request.due.acknowledge_by),
        "complete_by": iso(request.due.complete_by),
        "extended": request.extended,
        "closed_at": iso(request.closed_at) if request.closed_at else None,
        "events": [
            {
                "seq": s.seq,
                "action": s.action,
                "state": s.state.value,
                "at": iso(s.at),
                "actor": s.actor,
                "text": s.text,
                "record_id": s.record_id,
            }
            for s in request.steps
        ],
    }


def consent_json(record: ConsentRecord, events: Sequence[store.EventRow]) -> dict[str, Any]:
    """A consent as an access bundle lists it: terms, artefact, state and history."""
    return {
        "id": record.id,
        "state": record.state.value,
        "terms": consent_terms_json(record.terms),
        "artefact": record.artefact,
        "supersedes": record.supersedes,
        "requested_by": record.requested_by,
        "uses": record.uses,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "events": [
            {
                "seq": e.seq,
                "action": e.action,
                "state": e.state,
                "at": iso(from_ms(e.at_ms)),
                "actor": e.actor,
            }
            for e in events
        ],
    }
