"""Data-subject requests: kinds, the state machine, who may act, and deadlines; pure.

Law 91/2025/QH15 Art. 4 gives a data subject the rights to access, object, restrict, erase,
rectify and complain; Decree 356/2025 says how fast a controller must answer. In CDX every
request has one **handler**:

=============  ========================================  ====================================
kind           addressed to                              handled by
=============  ========================================  ====================================
access         the platform (history and consents)       the consent service, at once
objection      an agency (subsystem), for a purpose      that agency
restriction    an agency (subsystem), for a purpose      that agency
erasure        the agency that holds the data            that agency
rectification  the agency that holds the data            that agency
complaint      the data protection authority             its inspectors
=============  ========================================  ====================================

States and who moves them (``transition`` raises ``InvalidTransitionError`` for anything
else; ``EXTEND`` keeps the state and may happen once)::

    (file, subject) -> RECEIVED -(acknowledge, handler)-> ACKNOWLEDGED -(start)-> IN_PROGRESS
    ACKNOWLEDGED | IN_PROGRESS -(complete | refuse, handler)-> COMPLETED | REFUSED
    ACKNOWLEDGED | IN_PROGRESS -(extend, handler, once, with a reason)-> the same state
    RECEIVED | ACKNOWLEDGED | IN_PROGRESS -(withdraw, subject)-> WITHDRAWN

Deadlines (``DECREE_356``): acknowledge within 2 working days; complete within 15 days
(calendar days: the decree says "working" only for the acknowledgement, and the stricter
reading is the one a controller can defend), extended once by 15 more days, with a reason. Each
deadline ends when its last local day ends (``consent.workdays``). A request is **overdue**
when it is still RECEIVED at its acknowledgement deadline, or not finished at its completion
deadline.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdx import errors
from consent.workdays import WorkingCalendar

__all__ = [
    "DECREE_356",
    "MAX_TEXT_CHARS",
    "DeadlineRule",
    "Deadlines",
    "Handler",
    "Party",
    "RequestAction",
    "RequestKind",
    "RequestState",
    "check_text",
    "deadlines",
    "extended",
    "overdue",
    "party_of",
    "transition",
]

#: The longest text a citizen, an agency or an inspector writes into a request.
MAX_TEXT_CHARS = 4000
#: C0 controls but tab and newline, and DEL: free text may hold any other character (every
#: display escapes it); PostgreSQL text cannot even hold NUL.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Handler(enum.Enum):
    """Who answers a request."""

    PLATFORM = "platform"
    AGENCY = "agency"
    INSPECTOR = "inspector"


class RequestKind(enum.Enum):
    """What the citizen asks for (the value is the stored and logged name)."""

    ACCESS = "access"
    OBJECTION = "objection"
    RESTRICTION = "restriction"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    COMPLAINT = "complaint"

    @property
    def handler(self) -> Handler:
        if self is RequestKind.ACCESS:
            return Handler.PLATFORM
        if self is RequestKind.COMPLAINT:
            return Handler.INSPECTOR
        return Handler.AGENCY

    @property
    def needs_purpose(self) -> bool:
        """Objection and restriction are about processing for a purpose."""
        return self in (RequestKind.OBJECTION, RequestKind.RESTRICTION)

    @property
    def needs_details(self) -> bool:
        """A complaint or a rectification means nothing without the citizen's words."""
        return self in (RequestKind.COMPLAINT, RequestKind.RECTIFICATION)


class RequestState(enum.Enum):
    """Where a request is (values match the proto enum names without ``REQUEST_``)."""

    RECEIVED = "RECEIVED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    REFUSED = "REFUSED"
    WITHDRAWN = "WITHDRAWN"

    @property
    def final(self) -> bool:
        return self in (RequestState.COMPLETED, RequestState.REFUSED, RequestState.WITHDRAWN)


class RequestAction(enum.Enum):
    """A transition; the value is the event name stored, logged and shown."""

    FILE = "received"
    ACKNOWLEDGE = "acknowledged"
    START = "in_progress"
    EXTEND = "extended"
    COMPLETE = "completed"
    REFUSE = "refused"
    WITHDRAW = "withdrawn"

    @property
    def needs_text(self) -> bool:
        """An extension and a refusal need a reason; a completion says what was done."""
        return self in (RequestAction.EXTEND, RequestAction.REFUSE, RequestAction.COMPLETE)


class Party(enum.Enum):
    """Who may take an action: the data subject, or the request's handler."""

    SUBJECT = "subject"
    HANDLER = "handler"


_S, _A = RequestState, RequestAction
_OPEN = (_S.RECEIVED, _S.ACKNOWLEDGED, _S.IN_PROGRESS)
_WORKING = (_S.ACKNOWLEDGED, _S.IN_PROGRESS)
_TRANSITIONS: dict[tuple[RequestState | None, RequestAction], RequestState] = {
    (None, _A.FILE): _S.RECEIVED,
    (_S.RECEIVED, _A.ACKNOWLEDGE): _S.ACKNOWLEDGED,
    (_S.ACKNOWLEDGED, _A.START): _S.IN_PROGRESS,
    **{(s, _A.COMPLETE): _S.COMPLETED for s in _WORKING},
    **{(s, _A.REFUSE): _S.REFUSED for s in _WORKING},
    **{(s, _A.EXTEND): s for s in _WORKING},
    **{(s, _A.WITHDRAW): _S.WITHDRAWN for s in _OPEN},
}
_PARTY = {
    _A.FILE: Party.SUBJECT,
    _A.WITHDRAW: Party.SUBJECT,
    _A.ACKNOWLEDGE: Party.HANDLER,
    _A.START: Party.HANDLER,
    _A.EXTEND: Party.HANDLER,
    _A.COMPLETE: Party.HANDLER,
    _A.REFUSE: Party.HANDLER,
}


def party_of(action: RequestAction) -> Party:
    """Who may take ``action``."""
    return _PARTY[action]


def transition(
    state: RequestState | None, action: RequestAction, *, extended: bool = False
) -> RequestState:
    """The state after ``action`` (``None``: the request does not exist yet).

    Raises:
        InvalidTransitionError: not allowed from ``state``, or a second extension.
    """
    if action is RequestAction.EXTEND and extended:
        raise errors.InvalidTransitionError("the one extension has already been used")
    new = _TRANSITIONS.get((state, action))
    if new is None:
        where = state.value if state is not None else "a new request"
        raise errors.InvalidTransitionError(f"cannot {action.name.lower()} from {where}")
    return new


def check_text(text: str, *, required: bool, what: str) -> str:
    """A citizen's, agency's or inspector's free text: line endings normalised, length bounded,
    no control characters but tab and newline.

    Raises:
        ReasonRequiredError: ``required`` and the text is blank.
        LimitExceededError: longer than ``MAX_TEXT_CHARS``.
        UnsafeCharactersError: a control character.
    """
    value = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(value) > MAX_TEXT_CHARS:
        raise errors.LimitExceededError(f"the {what} is longer than {MAX_TEXT_CHARS} characters")
    if _CONTROL.search(value):
        raise errors.UnsafeCharactersError(f"the {what} holds a control character")
    if required and not value:
        raise errors.ReasonRequiredError(f"a {what} is required")
    return value


# --- deadlines -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadlineRule:
    """How long a handler has: working days to acknowledge, calendar days to complete, and
    the one extension's calendar days."""

    acknowledge_working_days: int
    complete_days: int
    extension_days: int


#: Decree 356/2025: acknowledge within 2 working days; complete within 15 days, once extended.
DECREE_356 = DeadlineRule(acknowledge_working_days=2, complete_days=15, extension_days=15)


@dataclass(frozen=True)
class Deadlines:
    """When a request must be acknowledged and completed (instants: missed at or after)."""

    acknowledge_by: datetime
    complete_by: datetime


def deadlines(
    received_at: datetime, calendar: WorkingCalendar, rule: DeadlineRule = DECREE_356
) -> Deadlines:
    """The deadlines of a request received at ``received_at`` (an aware time)."""
    day = calendar.local_day(received_at)
    acknowledge_by = calendar.end_of_day(
        calendar.add_working_days(day, rule.acknowledge_working_days)
    )
    complete_by = calendar.end_of_day(day + timedelta(days=rule.complete_days))
    # Holidays can push the acknowledgement past the completion deadline (a long lunar new
    # year); completing can never be due before acknowledging.
    return Deadlines(acknowledge_by, max(complete_by, acknowledge_by))


def extended(
    complete_by: datetime, calendar: WorkingCalendar, rule: DeadlineRule = DECREE_356
) -> datetime:
    """The completion deadline after the one extension."""
    last = calendar.last_day(complete_by)
    return calendar.end_of_day(last + timedelta(days=rule.extension_days))


def overdue(state: RequestState, due: Deadlines, now: datetime) -> str | None:
    """Which deadline an open request has missed at ``now``: ``"acknowledgement"``,
    ``"completion"`` (the later one wins), or ``None``."""
    if state.final:
        return None
    if now >= due.complete_by:
        return "completion"
    if state is RequestState.RECEIVED and now >= due.acknowledge_by:
        return "acknowledgement"
    return None
