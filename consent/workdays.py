"""Working days for legal deadlines: weekends and public holidays skipped, in one time zone; pure.

Decree 356/2025 counts the acknowledgement of a data-subject request in *working days*: days
that are neither a weekend day nor a public holiday where the request was received. Public
holidays are not computable (the lunar new year moves; the government adds bridge days each
year), so they are configuration: a list of dates (``consent.json``'s ``public_holidays``).

Days are local calendar days in ``zone`` (``Asia/Ho_Chi_Minh`` by default): a request filed at
23:30 on a Friday in Hanoi was received on Friday, whatever the UTC date. A deadline "within N
working days" ends when the N-th working day after the day of receipt ends (local midnight);
``end_of_day`` gives that instant in UTC, and a deadline is missed at or after it.

Nothing here reads the clock: times come in as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdx import errors

__all__ = [
    "DEFAULT_ZONE",
    "MAX_HOLIDAYS",
    "WEEKEND",
    "WorkingCalendar",
]

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
#: Saturday and Sunday (``date.weekday()`` numbers).
WEEKEND = frozenset({5, 6})
#: A configured holiday list is bounded (decades of holidays are a few hundred dates).
MAX_HOLIDAYS = 2000


@dataclass(frozen=True)
class WorkingCalendar:
    """Which local days are working days, and when a local day ends."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_ZONE))
    holidays: frozenset[date] = frozenset()
    weekend: frozenset[int] = WEEKEND

    def __post_init__(self) -> None:
        if len(self.holidays) > MAX_HOLIDAYS:
            raise errors.LimitExceededError(f"at most {MAX_HOLIDAYS} public holidays")
        if not self.weekend <= frozenset(range(7)) or len(self.weekend) > 5:
            raise errors.InvalidArgumentError("a week needs at least two working days")

    @classmethod
    def from_settings(
        cls, zone: str = DEFAULT_ZONE, holidays: Iterable[str] = ()
    ) -> WorkingCalendar:
        """A calendar from configuration text: a time zone name and ISO dates.

        Raises:
            InvalidArgumentError: an unknown time zone or a date that is not ``YYYY-MM-DD``.
            LimitExceededError: more than ``MAX_HOLIDAYS`` dates.
        """
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise errors.InvalidArgumentError(f"unknown time zone {zone!r}") from exc
        days: set[date] = set()
        for text in holidays:
            if len(days) >= MAX_HOLIDAYS:
                raise errors.LimitExceededError(f"at most {MAX_HOLIDAYS} public holidays")
            try:
                days.add(date.fromisoformat(str(text)))
            except ValueError as exc:
                raise errors.InvalidArgumentError(
                    "a public holiday is not a date (expected YYYY-MM-DD)"
                ) from exc
        return cls(tz, frozenset(days))

    def is_working_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def local_day(self, moment: datetime) -> date:
        """The local calendar day ``moment`` (an aware time) falls on."""
        if moment.tzinfo is None:
            raise errors.InvalidArgumentError("a time needs a time zone")
        return moment.astimezone(self.zone).date()

    def end_of_day(self, day: date) -> datetime:
        """The UTC instant at which local ``day`` ends (the next local midnight)."""
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=self.zone).astimezone(UTC)

    def last_day(self, deadline: datetime) -> date:
        """The local day a deadline from ``end_of_day`` closes (what people are told)."""
        return self.local_day(deadline - timedelta(microseconds=1))

    def add_working_days(self, day: date, count: int) -> date:
        """The ``count``-th working day after ``day`` (``day`` itself never counts).

        Raises:
            InvalidArgumentError: ``count`` below 1.
        """
        if count < 1:
            raise errors.InvalidArgumentError("count working days from 1")
        current, found = day, 0
        while found < count:
            current += timedelta(days=1)
            if self.is_working_day(current):
                found += 1
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """How many working days lie after ``start`` up to and including ``end``."""
        count, current = 0, start
        while current < end:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count += 1
        return count
