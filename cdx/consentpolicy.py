"""Decides whether a citizen's consents cover a request, and which state changes are allowed; pure.

DESIGN §7. A consent grants a **grantee** (client subsystem) access to a **subject**'s data from
some **services**, for one **purpose**, limited to some **fields**, within a validity window and
optionally a number of uses. ``evaluate`` takes the subject's consents and the request and
either returns an ``Allow`` (which consent, which fields) or raises the ``ConsentDeniedError``
subclass that tells the caller why:

==================  ==============================  ===========================================
reason              error (code)                    when
==================  ==============================  ===========================================
none                ConsentDeniedError              no consent of this subject for this client
                    (``consent_missing``)           (or only pending, rejected, not yet valid)
purpose             ConsentPurposeError             consents exist, none for this service+purpose
revoked             ConsentRevokedError             the covering consent was revoked
expired             ConsentExpiredError             the covering consent's validity has ended
paused              ConsentPausedError              the citizen paused the covering consent
uses exhausted      ConsentExhaustedError           ``max_uses`` reached
field               ConsentFieldError               a requested field is outside the consent
==================  ==============================  ===========================================

When several consents cover the service and purpose but none allows the request, the reason
reported is that of the consent that came closest (field > exhausted > paused > expired >
revoked), so a citizen who paused one consent and revoked an older one sees "paused".

``transition`` is the lifecycle (``PENDING -> ACTIVE <-> PAUSED -> REVOKED | EXPIRED``, plus
``REJECTED``); it raises ``InvalidTransitionError`` for any other change. Nothing here reads the
clock: ``now`` is a parameter.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from cdx import errors
from cdx.ids import CitizenId, ServiceId, SubsystemId

__all__ = [
    "DENY_ERRORS",
    "MAX_FIELDS",
    "MAX_FIELD_CHARS",
    "MAX_PURPOSE_CHARS",
    "MAX_RETENTION_DAYS",
    "MAX_SERVICES",
    "MAX_USES",
    "MAX_VALIDITY",
    "Allow",
    "ConsentAction",
    "ConsentState",
    "ConsentTerms",
    "ConsentView",
    "check_terms",
    "deny_error",
    "evaluate",
    "transition",
]

#: Limits on terms (DESIGN §9: limits on every untrusted size).
MAX_SERVICES = 32
MAX_FIELDS = 128
MAX_FIELD_CHARS = 64
MAX_PURPOSE_CHARS = 64
MAX_USES = 1_000_000
MAX_RETENTION_DAYS = 36_500
MAX_VALIDITY = timedelta(days=5 * 366)

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_PURPOSE = re.compile(r"[A-Z0-9_][A-Z0-9_.\-]{0,63}", re.IGNORECASE)


class ConsentState(enum.Enum):
    """Where a consent is in its lifecycle (values match the proto enum names)."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def final(self) -> bool:
        """No further change is possible from this state."""
        return self in _FINAL


_FINAL = frozenset({ConsentState.REVOKED, ConsentState.EXPIRED, ConsentState.REJECTED})


class ConsentAction(enum.Enum):
    """A lifecycle event; the value is the event name stored and shown (past tense)."""

    REQUEST = "requested"  # an agency asks: -> PENDING
    GRANT = "granted"  # the citizen grants directly: -> ACTIVE
    APPROVE = "approved"
    REJECT = "rejected"
    PAUSE = "paused"
    RESUME = "resumed"
    REVOKE = "revoked"
    EXPIRE = "expired"  # by time, by the system
    SUPERSEDE = "superseded"  # replaced by a consent with changed terms (final, like revoked)


_S, _A = ConsentState, ConsentAction
_TRANSITIONS: dict[tuple[ConsentState | None, ConsentAction], ConsentState] = {
    (None, _A.REQUEST): _S.PENDING,
    (None, _A.GRANT): _S.ACTIVE,
    (_S.PENDING, _A.APPROVE): _S.ACTIVE,
    (_S.PENDING, _A.REJECT): _S.REJECTED,
    (_S.PENDING, _A.EXPIRE): _S.EXPIRED,
    (_S.ACTIVE, _A.PAUSE): _S.PAUSED,
    (_S.ACTIVE, _A.REVOKE): _S.REVOKED,
    (_S.ACTIVE, _A.EXPIRE): _S.EXPIRED,
    (_S.ACTIVE, _A.SUPERSEDE): _S.REVOKED,
    (_S.PAUSED, _A.RESUME): _S.ACTIVE,
    (_S.PAUSED, _A.REVOKE): _S.REVOKED,
    (_S.PAUSED, _A.EXPIRE): _S.EXPIRED,
    (_S.PAUSED, _A.SUPERSEDE): _S.REVOKED,
}


def transition(state: ConsentState | None, action: ConsentAction) -> ConsentState:
    """The state after ``action`` (``state`` is ``None`` for a consent being created).

    Raises:
        InvalidTransitionError: ``action`` is not allowed from ``state``.
    """
    try:
        return _TRANSITIONS[(state, action)]
    except KeyError:
        where = state.value if state is not None else "nothing"
        raise errors.InvalidTransitionError(
            f"cannot apply '{action.value}' to a consent in state {where}"
        ) from None


@dataclass(frozen=True)
class ConsentTerms:
    """What a citizen grants (Account Aggregator model). Signed as the consent artefact.

    ``valid_from``/``valid_until`` are aware UTC datetimes with whole seconds; ``data_from`` /
    ``data_until`` bound the dates of the data that may be released (inclusive, ``None`` =
    unbounded); ``max_uses`` 0 means unlimited; ``retention_days`` is the retention at the
    recipient.
    """

    subject: CitizenId
    grantee: str
    services: tuple[str, ...]
    purpose: str
    fields: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    data_from: date | None = None
    data_until: date | None = None
    max_uses: int = 0
    retention_days: int = 0

    def covers(self, service: str, purpose: str) -> bool:
        return purpose == self.purpose and service in self.services


def check_terms(terms: ConsentTerms, *, now: datetime) -> ConsentTerms:
    """Validate terms from an untrusted source; returns them normalised (sorted, whole seconds).

    Raises:
        InvalidArgumentError: a malformed grantee, service, purpose or field, an empty list,
            validity not in the future or not after its start, a reversed data range.
        LimitExceededError: too many services or fields, too many uses, too long a validity
            or retention.
    """
    if not isinstance(terms.subject, CitizenId):
        raise errors.InvalidArgumentError("the consent subject is not a citizen id")
    SubsystemId.parse(terms.grantee)
    if not terms.services:
        raise errors.InvalidArgumentError("a consent names at least one service")
    if len(terms.services) > MAX_SERVICES:
        raise errors.LimitExceededError(f"a consent names at most {MAX_SERVICES} services")
    for service in terms.services:
        ServiceId.parse(service)
    if not isinstance(terms.purpose, str) or not _PURPOSE.fullmatch(terms.purpose):
        raise errors.InvalidArgumentError("invalid purpose code")
    if not terms.fields:
        raise errors.InvalidArgumentError("a consent names at least one field")
    if len(terms.fields) > MAX_FIELDS:
        raise errors.LimitExceededError(f"a consent names at most {MAX_FIELDS} fields")
    for name in terms.fields:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise errors.InvalidArgumentError("invalid field name")
    for when in (terms.valid_from, terms.valid_until):
        if when.tzinfo is None:
            raise errors.InvalidArgumentError("consent validity must be timezone-aware")
    valid_from = terms.valid_from.replace(microsecond=0)
    valid_until = terms.valid_until.replace(microsecond=0)
    if valid_until <= valid_from:
        raise errors.InvalidArgumentError("a consent must end after it starts")
    if valid_until <= now:
        raise errors.InvalidArgumentError("a consent must be valid until a future time")
    if valid_until - max(valid_from, now) > MAX_VALIDITY:
        raise errors.LimitExceededError("a consent is valid for at most five years")
    if terms.data_from and terms.data_until and terms.data_until < terms.data_from:
        raise errors.InvalidArgumentError("the data date range ends before it starts")
    if not 0 <= terms.max_uses <= MAX_USES:
        raise errors.LimitExceededError(f"max uses must be between 0 and {MAX_USES}")
    if not 0 <= terms.retention_days <= MAX_RETENTION_DAYS:
        raise errors.LimitExceededError("retention is at most 100 years")
    return ConsentTerms(
        subject=terms.subject,
        grantee=terms.grantee,
        services=tuple(sorted(set(terms.services))),
        purpose=terms.purpose,
        fields=frozenset(terms.fields),
        valid_from=valid_from,
        valid_until=valid_until,
        data_from=terms.data_from,
        data_until=terms.data_until,
        max_uses=terms.max_uses,
        retention_days=terms.retention_days,
    )


@dataclass(frozen=True)
class ConsentView:
    """A consent as the policy sees it: id, current state, terms and uses so far."""

    id: str
    state: ConsentState
    terms: ConsentTerms
    uses: int = 0

    @property
    def limited(self) -> bool:
        """Whether the consent counts uses (``max_uses`` > 0)."""
        return self.terms.max_uses > 0


@dataclass(frozen=True)
class Allow:
    """The request is covered: by which consent, and which fields may be released."""

    consent_id: str
    allowed_fields: frozenset[str]
    valid_until: datetime
    limited: bool = False
    data_from: date | None = None
    data_until: date | None = None
    retention_days: int = 0


@dataclass(order=True)
class _Denial:
    rank: int
    error: type[errors.ConsentDeniedError] = field(compare=False)
    consent_id: str = field(compare=False, default="")


# Closeness of a denied candidate to being allowed; the closest one names the reason.
_MISSING, _PURPOSE_RANK, _REVOKED, _EXPIRED, _PAUSED, _EXHAUSTED, _FIELD_RANK = range(7)


def _judge(
    consent: ConsentView,
    service: str,
    purpose: str,
    fields: frozenset[str],
    now: datetime,
    partial: bool,
) -> _Denial | None:
    terms, state = consent.terms, consent.state
    if not terms.covers(service, purpose):
        return _Denial(_PURPOSE_RANK, errors.ConsentPurposeError, consent.id)
    if state in (ConsentState.PENDING, ConsentState.REJECTED):
        return _Denial(_MISSING, errors.ConsentDeniedError, consent.id)
    if state is ConsentState.REVOKED:
        return _Denial(_REVOKED, errors.ConsentRevokedError, consent.id)
    if state is ConsentState.EXPIRED or now >= terms.valid_until:
        return _Denial(_EXPIRED, errors.ConsentExpiredError, consent.id)
    if now < terms.valid_from:
        return _Denial(_MISSING, errors.ConsentDeniedError, consent.id)
    if state is ConsentState.PAUSED:
        return _Denial(_PAUSED, errors.ConsentPausedError, consent.id)
    if consent.limited and consent.uses >= terms.max_uses:
        return _Denial(_EXHAUSTED, errors.ConsentExhaustedError, consent.id)
    if fields and not (fields & terms.fields if partial else fields <= terms.fields):
        return _Denial(_FIELD_RANK, errors.ConsentFieldError, consent.id)
    return None


def evaluate(
    consents: Iterable[ConsentView],
    *,
    subject: CitizenId,
    client: str,
    service: str,
    purpose: str,
    fields: Collection[str],
    now: datetime,
    consent_id: str | None = None,
    partial: bool = False,
) -> Allow:
    """Decide whether ``consents`` let ``client`` receive ``fields`` of ``subject`` now.

    ``consents`` may hold anyone's consents: only those of ``subject`` granted to ``client``
    (and, when ``consent_id`` is given, only that one) are considered. Empty ``fields`` asks
    for every consented field. Normally every requested field must be consented; with
    ``partial`` a consent covering some of them allows those (field minimisation for a request
    that named no fields, where ``fields`` are all the agreement permits). When several
    consents allow the request, the one covering the most requested fields wins, then an
    unlimited one (so that counted uses are not spent needlessly), then the longest-lived.

    Returns:
        ``Allow`` naming the consent and the fields that may be released (the requested fields
        it covers, or all its fields when none were requested).

    Raises:
        ConsentDeniedError: no consent covers the request (code ``consent_missing``), or the
            subclass naming the reason: ``ConsentPurposeError``, ``ConsentRevokedError``,
            ``ConsentExpiredError``, ``ConsentPausedError``, ``ConsentExhaustedError``,
            ``ConsentFieldError``. The error's ``consent_id`` attribute names the consent that
            came closest (empty when none).
    """
    requested = frozenset(fields)
    best: _Denial | None = None
    allowed: list[ConsentView] = []
    for consent in consents:
        if consent.terms.grantee != client or consent.terms.subject != subject:
            continue
        if consent_id and consent.id != consent_id:
            continue
        denial = _judge(consent, service, purpose, requested, now, partial)
        if denial is None:
            allowed.append(consent)
        elif best is None or denial > best:
            best = denial
    if allowed:
        chosen = min(
            allowed,
            key=lambda c: (
                -len(requested & c.terms.fields),
                c.limited,
                -c.terms.valid_until.timestamp(),
                c.id,
            ),
        )
        terms = chosen.terms
        return Allow(
            consent_id=chosen.id,
            allowed_fields=(requested & terms.fields) if requested else terms.fields,
            valid_until=terms.valid_until,
            limited=chosen.limited,
            data_from=terms.data_from,
            data_until=terms.data_until,
            retention_days=terms.retention_days,
        )
    if best is None:
        best = _Denial(_MISSING, errors.ConsentDeniedError)
    error = best.error()
    error.consent_id = best.consent_id  # type: ignore[attr-defined]
    raise error


#: Deny reasons by stable code (for mapping a peer's answer back to its error class).
DENY_ERRORS: dict[str, type[errors.ConsentDeniedError]] = {
    cls.code: cls
    for cls in (
        errors.ConsentDeniedError,
        errors.ConsentPausedError,
        errors.ConsentRevokedError,
        errors.ConsentExpiredError,
        errors.ConsentPurposeError,
        errors.ConsentFieldError,
        errors.ConsentExhaustedError,
    )
}


def deny_error(code: str) -> errors.ConsentDeniedError:
    """The denial error for a stable deny code (unknown codes deny as ``consent_missing``)."""
    return DENY_ERRORS.get(code, errors.ConsentDeniedError)()
