"""Domain types of the consent service and the one JSON encoding of consent terms.

``terms_to_json`` is used for storage, for the artefact's claims and for receipts, so that what
is stored, what is signed and what the citizen downloads can never disagree. Stored terms and
artefacts are sealed (``consent.sealing``): ``ConsentRecord.from_row`` opens them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cdx import errors
from cdx.consentpolicy import ConsentState, ConsentTerms, ConsentView
from cdx.ids import CitizenId
from consent.sealing import ARTEFACT, TERMS, DataKeys

SUBJECT_TAG_CONTEXT = b"cdx/consent/subject-tag/v1\n"


def subject_tag(tag_key: bytes, subject: CitizenId) -> str:
    """Keyed tag of a national id (HMAC-SHA256): the only form the database indexes.

    A plain hash would do no good: 12-digit ids are enumerable (DESIGN §8).
    """
    return hmac.new(
        tag_key, SUBJECT_TAG_CONTEXT + subject.value.encode(), hashlib.sha256
    ).hexdigest()


def iso(when: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` and whole seconds."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    """An aware UTC datetime from Unix milliseconds (int64 on the wire).

    Raises:
        InvalidArgumentError: a time beyond the years a datetime can hold.
    """
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise errors.InvalidArgumentError("time out of range") from exc


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset) into an aware UTC datetime.

    Raises:
        InvalidArgumentError: not a timestamp with a time zone.
    """
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise errors.InvalidArgumentError("invalid timestamp") from exc
    if value.tzinfo is None:
        raise errors.InvalidArgumentError("a timestamp needs a time zone")
    return value.astimezone(UTC)


def parse_date(text: str) -> date | None:
    """Parse an ISO date; empty means unbounded.

    Raises:
        InvalidArgumentError: not an ISO date.
    """
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise errors.InvalidArgumentError("invalid date (expected YYYY-MM-DD)") from exc


def terms_to_json(terms: ConsentTerms) -> dict[str, Any]:
    """The terms as JSON values (the artefact's claims use exactly these keys)."""
    return {
        "sub": terms.subject.value,
        "grantee": terms.grantee,
        "services": list(terms.services),
        "purpose": terms.purpose,
        "fields": sorted(terms.fields),
        "data_from": terms.data_from.isoformat() if terms.data_from else None,
        "data_until": terms.data_until.isoformat() if terms.data_until else None,
        "valid_from": iso(terms.valid_from),
        "valid_until": iso(terms.valid_until),
        "max_uses": terms.max_uses,
        "retention_days": terms.retention_days,
    }


def terms_from_json(obj: dict[str, Any]) -> ConsentTerms:
    """Inverse of ``terms_to_json`` (for rows this service wrote).

    Raises:
        MalformedError: the object is not a terms encoding.
    """
    try:
        return ConsentTerms(
            subject=CitizenId(obj["sub"]),
            grantee=obj["grantee"],
            services=tuple(obj["services"]),
            purpose=obj["purpose"],
            fields=frozenset(obj["fields"]),
            valid_from=parse_iso(obj["valid_from"]),
            valid_until=parse_iso(obj["valid_until"]),
            data_from=parse_date(obj.get("data_from") or ""),
            data_until=parse_date(obj.get("data_until") or ""),
            max_uses=int(obj["max_uses"]),
            retention_days=int(obj["retention_days"]),
        )
    except (KeyError, TypeError, ValueError, errors.CdxError) as exc:
        raise errors.MalformedError("stored consent terms do not parse") from exc


def terms_of_row(row: Any, keys: DataKeys) -> ConsentTerms:
    """Only the terms of a ``consents`` row (what a check needs: the artefact stays sealed).

    Raises:
        KeyStoreError: the terms do not open with ``keys``.
        MalformedError: the opened terms do not parse.
    """
    try:
        obj = json.loads(keys.open(row.id, TERMS, row.terms))
    except ValueError as exc:
        raise errors.MalformedError("stored consent terms do not parse") from exc
    if not isinstance(obj, dict):
        raise errors.MalformedError("stored consent terms do not parse")
    return terms_from_json(obj)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ConsentRecord:
    """A consent as stored: terms, current state, artefact and counters."""

    id: str
    state: ConsentState
    terms: ConsentTerms
    artefact: str
    supersedes: str
    requested_by: str
    uses: int
    version: int
    created_at: datetime
    updated_at: datetime

    def view(self) -> ConsentView:
        return ConsentView(self.id, self.state, self.terms, self.uses)

    @classmethod
    def from_row(cls, row: Any, keys: DataKeys) -> ConsentRecord:
        """The consent of a ``consents`` row, its terms and artefact opened with ``keys``.

        Raises:
            KeyStoreError: a sealed value does not open with ``keys``.
            MalformedError: the opened terms do not parse.
        """
        return cls(
            id=row.id,
            state=ConsentState(row.state),
            terms=terms_of_row(row, keys),
            artefact=keys.open(row.id, ARTEFACT, row.artefact) if row.artefact else "",
            supersedes=row.supersedes,
            requested_by=row.requested_by,
            uses=int(row.uses),
            version=int(row.version),
            created_at=from_ms(int(row.created_at_ms)),
            updated_at=from_ms(int(row.updated_at_ms)),
        )


@dataclass(frozen=True)
class ConsentEvent:
    """One append-only lifecycle event (never carries the national id)."""

    seq: int
    consent_id: str
    action: str
    state: ConsentState
    at: datetime
    actor: str
    subject_tag: str
    grantee: str
    services: tuple[str, ...]
    version: int
