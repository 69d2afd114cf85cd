"""What a citizen may be told, what they chose, and which log entries concern which choice;
pure, no I/O.

A log entry becomes an ``Event`` (``event_of``): the fields a message needs (agency, service,
purpose, basis, decision, time; never a payload value, never the national id) and the
categories it belongs to. An exchange is recorded twice (consumer and provider sign one record
each, same message id), so an access event is keyed by its message id: whichever record
arrives first tells the citizen, the other is the same event (``Event.key``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cdx import errors
from cdx.ids import SubsystemId
from cdx.v1 import audit_pb2, common_pb2

LANGUAGES = ("en", "vi")
DEFAULT_LANGUAGE = "vi"
KIND_ACCESS = "access"
KIND_CONSENT_EVENT = "consent_event"
KIND_INSPECTOR_QUERY = "inspector_query"
KIND_UNSEAL = "unseal"
#: Consent-event actors that are not someone acting for the citizen.
_OWN_ACTORS = frozenset({"citizen", "system"})


class Category(enum.StrEnum):
    """What a citizen may choose to be told about."""

    EVERY_ACCESS = "every_access"  # every allowed access, and an inspector's query about them
    CONSENT_ACCESS = "consent_access"  # allowed accesses under their consent
    DENIALS = "denials"  # refused accesses
    CONSENT_REQUESTS = "consent_requests"  # an agency asks for their consent
    UNSEALED = "unsealed"  # a sealed access is disclosed to them
    REPRESENTATIVE_ACTIONS = "representative_actions"  # someone else changed their consents


class Channel(enum.StrEnum):
    """How a notification travels."""

    EMAIL = "email"
    WEBHOOK = "webhook"  # the national app's webhook; the address is the citizen's app handle


@dataclass(frozen=True)
class Preferences:
    """A citizen's choices. Addresses are personal data: never in a ``repr`` or a log."""

    categories: frozenset[Category] = frozenset()
    email: str = field(default="", repr=False)
    app_handle: str = field(default="", repr=False)
    language: str = DEFAULT_LANGUAGE
    version: int = 0

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise errors.InvalidArgumentError("language must be en or vi")

    def addresses(self) -> list[tuple[Channel, str]]:
        """Where to send, one entry per channel the citizen turned on."""
        out = []
        if self.email:
            out.append((Channel.EMAIL, self.email))
        if self.app_handle:
            out.append((Channel.WEBHOOK, self.app_handle))
        return out

    def wants(self, event: Event) -> bool:
        return bool(self.categories & event.categories) and bool(self.addresses())


@dataclass(frozen=True)
class Event:
    """What a log entry tells its citizen (no national id, no payload value)."""

    index: int
    record_id: str
    kind: str
    categories: frozenset[Category]
    client: str = ""
    service: str = ""
    purpose: str = ""
    lawful_basis: str = ""
    decision: str = ""
    reason_code: str = ""
    time_ms: int = 0
    message_id: str = ""
    #: The entry the citizen's link opens: the unsealed one for an unseal, else this one.
    link_record_id: str = ""

    @property
    def key(self) -> str:
        """What "the same entry" means for "never twice": one exchange (both its records),
        else one record."""
        if self.kind == KIND_ACCESS and self.message_id:
            return f"message:{self.message_id}"
        return f"record:{self.record_id}"


def _decision(value: int) -> str:
    if value == common_pb2.ALLOW:
        return "ALLOW"
    return "DENY" if value == common_pb2.DENY else ""


def _basis(value: int) -> str:
    name = common_pb2.LawfulBasis.Name(value) if value in common_pb2.LawfulBasis.values() else ""
    return "" if name == "LAWFUL_BASIS_UNSPECIFIED" else name


def _is_agency(actor: str) -> bool:
    try:
        SubsystemId.parse(actor)
    except errors.CdxError:
        return False
    return True


def categories_of(record: audit_pb2.AccessRecord) -> frozenset[Category]:
    """The categories an entry belongs to (empty: nothing a citizen chooses to hear about)."""
    kind = record.kind or KIND_ACCESS
    if kind == KIND_ACCESS:
        if record.decision == common_pb2.DENY:
            return frozenset({Category.DENIALS})
        if record.decision != common_pb2.ALLOW:
            return frozenset()
        if record.lawful_basis == common_pb2.CONSENT:
            return frozenset({Category.EVERY_ACCESS, Category.CONSENT_ACCESS})
        return frozenset({Category.EVERY_ACCESS})
    if kind == KIND_INSPECTOR_QUERY:
        return frozenset({Category.EVERY_ACCESS})
    if kind == KIND_UNSEAL:
        return frozenset({Category.UNSEALED})
    if kind == KIND_CONSENT_EVENT:
        out = set()
        if record.reason_code == "requested":
            out.add(Category.CONSENT_REQUESTS)
        actor = record.actor
        if actor and actor not in _OWN_ACTORS and not _is_agency(actor):
            out.add(Category.REPRESENTATIVE_ACTIONS)  # someone acted for the citizen
        return frozenset(out)
    return frozenset()


def event_of(index: int, record: audit_pb2.AccessRecord) -> Event | None:
    """The event an entry is for its citizen, or ``None`` when no category covers it."""
    categories = categories_of(record)
    if not categories:
        return None
    kind = record.kind or KIND_ACCESS
    link = record.target_record_id if kind == KIND_UNSEAL else record.record_id
    return Event(
        index=index,
        record_id=record.record_id,
        kind=kind,
        categories=categories,
        client=record.client,
        service=record.service,
        purpose=record.purpose,
        lawful_basis=_basis(record.lawful_basis),
        decision=_decision(record.decision),
        reason_code=record.reason_code,
        time_ms=record.time_ms,
        message_id=record.message_id,
        link_record_id=link or record.record_id,
    )
