"""The lawful-basis contract (DESIGN §7): decides legal mandates and asks a consent checker.

Legal-mandate agreements (``LEGAL_OBLIGATION``, ``PUBLIC_TASK``, ``VITAL_INTEREST``) need no
consent: the agreement itself is the basis. ``CONSENT`` agreements ask a ``ConsentChecker``,
which the consent component implements (a cache fed by the consent service's change feed) and
the provider security server is given. Until one is plugged in, ``DenyAllConsentChecker``
refuses every consent-based request (fail closed).

The kernel holds this contract so that the security server (which asks) and the consent
component (which answers) both depend on it and never on each other. It does no I/O itself: the
checker is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from cdx import errors, telemetry
from cdx.globalconf import AgreementInfo

__all__ = [
    "CONSENT",
    "LEGAL_MANDATES",
    "ConsentChecker",
    "ConsentGrant",
    "DenyAllConsentChecker",
    "LawfulDecision",
    "decide_lawful_basis",
]

CONSENT = "CONSENT"
LEGAL_MANDATES = frozenset({"LEGAL_OBLIGATION", "PUBLIC_TASK", "VITAL_INTEREST"})


@dataclass(frozen=True)
class ConsentGrant:
    """An active consent that covers a request: its id and the fields it lets the client see."""

    consent_id: str
    allowed_fields: frozenset[str]


@runtime_checkable
class ConsentChecker(Protocol):
    """Decides whether an active consent covers one request.

    ``subject`` is the citizen's national id (never log it). ``fields`` are the fields the
    request may receive under its agreement. Return the grant with the consent's own field set
    (do not raise because the consent covers fewer fields: the provider intersects the sets for
    a request that named no fields, and refuses with ``ConsentFieldError`` a request that named
    a field the consent does not cover). Otherwise raise:

    Raises:
        ConsentDeniedError: (or a subclass: paused, revoked, expired, purpose, field, uses
            exhausted) no active consent covers the request.
        ConsentUnavailableError: the consent service is unreachable and no fresh cached
            decision exists (the provider then denies: fail closed).
    """

    def check(
        self,
        *,
        subject: str,
        client: str,
        service: str,
        purpose: str,
        fields: Sequence[str],
        consent_id: str | None,
        now: datetime,
    ) -> ConsentGrant: ...


class DenyAllConsentChecker:
    """The default checker: no consent service is configured, so no consent is ever active."""

    def check(
        self,
        *,
        subject: str,
        client: str,
        service: str,
        purpose: str,
        fields: Sequence[str],
        consent_id: str | None,
        now: datetime,
    ) -> ConsentGrant:
        raise errors.ConsentDeniedError("no consent service is configured on this server")


@dataclass(frozen=True)
class LawfulDecision:
    """The basis an allowed request rests on and the fields it may receive."""

    lawful_basis: str
    allowed_fields: frozenset[str]
    consent_id: str
    legal_reference: str


def decide_lawful_basis(
    agreement: AgreementInfo,
    requested_fields: frozenset[str],
    *,
    explicit_fields: bool,
    subject: str,
    consent_id: str | None,
    checker: ConsentChecker,
    now: datetime,
) -> LawfulDecision:
    """Apply DESIGN §7 to a request already covered by ``agreement``.

    ``requested_fields`` must already be a subset of the agreement's fields. For consent
    agreements the allowed set is the requested set intersected with the consent's; when the
    client named its fields (``explicit_fields``) the consent must cover every one of them.

    Raises:
        ConsentDeniedError (or subclass), ConsentUnavailableError: from the checker.
        PermissionDeniedError: the agreement names no lawful basis CDX knows.
    """
    if agreement.lawful_basis in LEGAL_MANDATES:
        return LawfulDecision(
            agreement.lawful_basis, requested_fields, "", agreement.legal_reference
        )
    if agreement.lawful_basis != CONSENT:
        raise errors.PermissionDeniedError("the agreement names no known lawful basis")
    with telemetry.stage("consent.check"):
        grant = checker.check(
            subject=subject,
            client=agreement.client,
            service=agreement.service,
            purpose=agreement.purpose,
            fields=sorted(requested_fields),
            consent_id=consent_id or None,
            now=now,
        )
    allowed = requested_fields & grant.allowed_fields
    if explicit_fields and allowed != requested_fields:
        raise errors.ConsentFieldError()
    if not allowed:
        raise errors.ConsentFieldError("the consent covers none of the requested fields")
    return LawfulDecision(CONSENT, allowed, grant.consent_id, agreement.legal_reference)
