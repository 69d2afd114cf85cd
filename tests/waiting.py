"""Time in tests: ``eventually`` waits for a condition under a deadline (the one way tests
wait; no blind sleeps), ``ManualClock`` is a clock a test moves instead of waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
    what: str = "the condition",
) -> T:
    """Call ``check()`` until it returns a truthy value, and return that value.

    An exception of a type in ``retry_on`` counts as "not yet". After ``timeout`` seconds the
    test fails, naming ``what`` and the last value or exception seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except retry_on as exc:
            last: object = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {last!r})")
        time.sleep(interval)  # the pause between two looks at the condition


class ManualClock:
    """A monotonic clock (seconds) that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
