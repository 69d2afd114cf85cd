"""Unit tests for the data-subject request state machine and its deadline arithmetic
(consent.requestpolicy, consent.workdays): tables for the rules, properties for the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import errors
from consent.requestpolicy import (
    DECREE_356,
    MAX_TEXT_CHARS,
    Deadlines,
    Party,
    RequestAction,
    RequestKind,
    RequestState,
    check_text,
    deadlines,
    extended,
    overdue,
    party_of,
    transition,
)
from consent.workdays import WorkingCalendar

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
#: Vietnam's public holidays of 2026 (the lunar new year: 14-22 February).
HOLIDAYS_2026 = frozenset(
    {date(2026, 1, 1), *(date(2026, 2, d) for d in range(14, 23)), date(2026, 4, 26),
     date(2026, 4, 30), date(2026, 5, 1), date(2026, 9, 2), date(2026, 9, 3)}
)  # fmt: skip
VN = WorkingCalendar(HANOI, HOLIDAYS_2026)
A, S = RequestAction, RequestState


def at(text: str) -> datetime:
    """A Hanoi wall-clock time."""
    return datetime.fromisoformat(text).replace(tzinfo=HANOI)


# --- the state machine ---------------------------------------------------------------------------

ALLOWED = [
    (None, A.FILE, S.RECEIVED),
    (S.RECEIVED, A.ACKNOWLEDGE, S.ACKNOWLEDGED),
    (S.ACKNOWLEDGED, A.START, S.IN_PROGRESS),
    (S.ACKNOWLEDGED, A.COMPLETE, S.COMPLETED),
    (S.IN_PROGRESS, A.COMPLETE, S.COMPLETED),
    (S.ACKNOWLEDGED, A.REFUSE, S.REFUSED),
    (S.IN_PROGRESS, A.REFUSE, S.REFUSED),
    (S.ACKNOWLEDGED, A.EXTEND, S.ACKNOWLEDGED),
    (S.IN_PROGRESS, A.EXTEND, S.IN_PROGRESS),
    (S.RECEIVED, A.WITHDRAW, S.WITHDRAWN),
    (S.ACKNOWLEDGED, A.WITHDRAW, S.WITHDRAWN),
    (S.IN_PROGRESS, A.WITHDRAW, S.WITHDRAWN),
]


@pytest.mark.parametrize(("state", "action", "after"), ALLOWED)
def test_every_allowed_transition(
    state: RequestState | None, action: RequestAction, after: RequestState
) -> None:
    assert transition(state, action) is after


@pytest.mark.parametrize("state", [None, *RequestState])
@pytest.mark.parametrize("action", list(RequestAction))
def test_everything_else_is_an_invalid_transition(
    state: RequestState | None, action: RequestAction
) -> None:
    if (state, action) in {(s, a) for s, a, _ in ALLOWED}:
        return
    with pytest.raises(errors.InvalidTransitionError):
        transition(state, action)


def test_a_request_is_extended_once() -> None:
    assert transition(S.IN_PROGRESS, A.EXTEND, extended=False) is S.IN_PROGRESS
    with pytest.raises(errors.InvalidTransitionError, match="extension"):
        transition(S.IN_PROGRESS, A.EXTEND, extended=True)


def test_the_subject_files_and_withdraws_the_handler_does_the_rest() -> None:
    assert {a for a in RequestAction if party_of(a) is Party.SUBJECT} == {A.FILE, A.WITHDRAW}


def test_handlers_of_each_kind() -> None:
    assert {k.value: k.handler.value for k in RequestKind} == {
        "access": "platform",
        "objection": "agency",
        "restriction": "agency",
        "erasure": "agency",
        "rectification": "agency",
        "complaint": "inspector",
    }


@given(st.lists(st.sampled_from(list(RequestAction)), max_size=20))
def test_any_sequence_of_actions_keeps_the_machine_sound(actions: list[RequestAction]) -> None:
    """Whatever is tried: a final state is never left, at most one extension is granted, and
    every state reached is one the table leads to."""
    state = transition(None, A.FILE)
    extensions = 0
    for action in actions:
        try:
            new = transition(state, action, extended=extensions > 0)
        except errors.InvalidTransitionError:
            continue
        assert not state.final, f"left final state {state} by {action}"
        if action is A.EXTEND:
            extensions += 1
            assert new is state
        state = new
    assert extensions <= 1


# --- free text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "required", "error"),
    [
        ("", True, errors.ReasonRequiredError),
        ("   \n\t ", True, errors.ReasonRequiredError),
        ("x" * (MAX_TEXT_CHARS + 1), False, errors.LimitExceededError),
        ("stop\x00now", False, errors.UnsafeCharactersError),
        ("bell\x07", False, errors.UnsafeCharactersError),
        ("esc\x1b[2J", False, errors.UnsafeCharactersError),
        ("del\x7f", False, errors.UnsafeCharactersError),
    ],
)
def test_bad_texts_are_refused_each_with_its_code(
    text: str, required: bool, error: type[errors.CdxError]
) -> None:
    with pytest.raises(error):
        check_text(text, required=required, what="reason")


def test_texts_keep_lines_and_any_script() -> None:
    assert check_text("  Tôi phản đối\r\nviệc xử lý\tdữ liệu  ", required=True, what="x") == (
        "Tôi phản đối\nviệc xử lý\tdữ liệu"
    )
    assert check_text("", required=False, what="x") == ""


# --- the working calendar ----------------------------------------------------------------------


def test_acknowledgement_skips_the_weekend() -> None:
    due = deadlines(at("2026-03-06T15:00"), VN)  # a Friday afternoon
    assert VN.last_day(due.acknowledge_by) == date(2026, 3, 10)  # Tuesday
    assert due.acknowledge_by == at("2026-03-11T00:00").astimezone(UTC)


def test_acknowledgement_skips_the_lunar_new_year() -> None:
    due = deadlines(at("2026-02-13T09:00"), VN)  # the Friday before Tết
    assert VN.last_day(due.acknowledge_by) == date(2026, 2, 24)  # Mon 23 and Tue 24


def test_the_day_of_receipt_is_the_local_day() -> None:
    # 23:30 on Friday in Hanoi is 16:30 UTC the same day; 00:30 on Saturday is still Friday
    # in UTC but Saturday in Hanoi.
    friday = deadlines(at("2026-03-06T23:30"), VN)
    saturday = deadlines(at("2026-03-07T00:30"), VN)
    assert VN.last_day(friday.acknowledge_by) == date(2026, 3, 10)
    assert VN.last_day(saturday.acknowledge_by) == date(2026, 3, 10)
    assert VN.last_day(friday.complete_by) == date(2026, 3, 21)
    assert VN.last_day(saturday.complete_by) == date(2026, 3, 22)


def test_completion_is_fifteen_days_and_the_extension_fifteen_more() -> None:
    due = deadlines(at("2026-03-02T10:00"), VN)
    assert VN.last_day(due.complete_by) == date(2026, 3, 17)
    assert VN.last_day(extended(due.complete_by, VN)) == date(2026, 4, 1)


def test_overdue_names_the_deadline_missed() -> None:
    due = deadlines(at("2026-03-06T15:00"), VN)
    before = due.acknowledge_by - timedelta(seconds=1)
    assert overdue(S.RECEIVED, due, before) is None
    assert overdue(S.RECEIVED, due, due.acknowledge_by) == "acknowledgement"
    assert overdue(S.ACKNOWLEDGED, due, due.acknowledge_by) is None
    assert overdue(S.IN_PROGRESS, due, due.complete_by) == "completion"
    assert overdue(S.RECEIVED, due, due.complete_by) == "completion"
    for final in (S.COMPLETED, S.REFUSED, S.WITHDRAWN):
        assert overdue(final, due, due.complete_by + timedelta(days=100)) is None


@pytest.mark.parametrize(
    ("zone", "holidays", "error"),
    [
        ("Mars/Olympus_Mons", [], errors.InvalidArgumentError),
        ("Asia/Ho_Chi_Minh", ["2026-13-01"], errors.InvalidArgumentError),
        ("Asia/Ho_Chi_Minh", ["tomorrow"], errors.InvalidArgumentError),
        ("Asia/Ho_Chi_Minh", [f"{2000 + i // 365}-01-01" for i in range(3000)], None),
        ("Asia/Ho_Chi_Minh", [str(date(2000, 1, 1) + timedelta(days=i)) for i in range(2001)],
         errors.LimitExceededError),
    ],
)  # fmt: skip
def test_calendar_settings_are_checked(
    zone: str, holidays: list[str], error: type[errors.CdxError] | None
) -> None:
    if error is None:
        WorkingCalendar.from_settings(zone, holidays)
        return
    with pytest.raises(error):
        WorkingCalendar.from_settings(zone, holidays)


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
holiday_sets = st.frozensets(
    st.dates(min_value=date(2020, 1, 1), max_value=date(2036, 3, 1)), max_size=120
)


@given(moments, holiday_sets)
def test_acknowledgement_is_due_at_the_end_of_the_second_working_day(
    received: datetime, holidays: frozenset[date]
) -> None:
    calendar = WorkingCalendar(HANOI, holidays)
    due = deadlines(received, calendar)
    day = calendar.local_day(received)
    last = calendar.last_day(due.acknowledge_by)
    assert calendar.is_working_day(last)
    assert calendar.working_days_between(day, last) == 2
    assert due.acknowledge_by == calendar.end_of_day(last)
    assert due.acknowledge_by > received
    # At least 24 hours, however late in the day it came in.
    assert due.acknowledge_by - received > timedelta(days=1)


@given(moments, holiday_sets)
def test_completion_is_never_before_acknowledgement_and_extension_adds_fifteen_days(
    received: datetime, holidays: frozenset[date]
) -> None:
    calendar = WorkingCalendar(HANOI, holidays)
    due = deadlines(received, calendar)
    assert due.complete_by >= due.acknowledge_by
    assert due.complete_by - received > timedelta(days=DECREE_356.complete_days)
    later = extended(due.complete_by, calendar)
    assert later - due.complete_by == timedelta(days=DECREE_356.extension_days)


@given(moments, moments, holiday_sets)
def test_deadlines_never_run_backwards(
    first: datetime, second: datetime, holidays: frozenset[date]
) -> None:
    calendar = WorkingCalendar(HANOI, holidays)
    early, late = sorted((first, second))
    a, b = deadlines(early, calendar), deadlines(late, calendar)
    assert a.acknowledge_by <= b.acknowledge_by
    assert a.complete_by <= b.complete_by


@given(moments, st.sampled_from(list(RequestState)), st.integers(-(10**7), 10**7))
def test_overdue_only_while_open_and_only_after_a_deadline(
    received: datetime, state: RequestState, offset_s: int
) -> None:
    due: Deadlines = deadlines(received, VN)
    now = received + timedelta(seconds=offset_s)
    missed = overdue(state, due, now)
    if missed is not None:
        assert not state.final
        assert now >= (due.complete_by if missed == "completion" else due.acknowledge_by)
    if not state.final and now >= due.complete_by:
        assert missed == "completion"


def test_the_single_box_config_names_a_usable_calendar() -> None:
    import tomllib

    from stack import cli as stack_cli
    from tests.conftest import PROJECT_ROOT

    raw = tomllib.loads((PROJECT_ROOT / "deploy" / "single-box.toml").read_text())["requests"]
    assert set(raw) <= set(stack_cli.REQUESTS_KEYS)
    calendar = WorkingCalendar.from_settings(raw["time_zone"], raw["public_holidays"])
    assert not calendar.is_working_day(date(2026, 2, 17))  # Tết
    assert calendar.is_working_day(date(2026, 2, 23))
